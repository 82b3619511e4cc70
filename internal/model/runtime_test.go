package model

import (
	"strings"
	"testing"
)

func TestRuntimeFields(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*AppSpec)
		field  string // "" means valid
		msg    string
	}{
		{"oci with runc", func(s *AppSpec) { s.Driver, s.Runtime = DriverOCI, RuntimeRunc }, "", ""},
		{"oci with sandbox", func(s *AppSpec) { s.Driver, s.Runtime = DriverOCI, RuntimeSandbox }, "", ""},
		{"oci default runtime", func(s *AppSpec) { s.Driver = DriverOCI }, "", ""},
		{"unknown runtime", func(s *AppSpec) { s.Driver, s.Runtime = DriverOCI, "kata" }, "runtime", "must be runc, crun or sandbox"},
		{"runtime without oci", func(s *AppSpec) { s.Runtime = RuntimeCrun }, "runtime", "only applies to driver oci"},
		{"bad driver", func(s *AppSpec) { s.Driver = "Docker!" }, "driver", "must be docker, oci or process"},
		{"user uid:gid", func(s *AppSpec) { s.User = "1000:1000" }, "", ""},
		{"user name", func(s *AppSpec) { s.User = "nobody" }, "", ""},
		{"bad user", func(s *AppSpec) { s.User = "root; rm" }, "user", "must be a user name"},
		{"relative workdir", func(s *AppSpec) { s.WorkingDir = "app" }, "workingDir", "absolute"},
		{"tmpfs root", func(s *AppSpec) { s.Tmpfs = []string{"/"} }, "tmpfs[0]", "other than /"},
		{"tmpfs twice", func(s *AppSpec) { s.Tmpfs = []string{"/tmp", "/tmp/"} }, "tmpfs[1]", "listed twice"},
		{"process without image", func(s *AppSpec) { s.Driver, s.Image = DriverProcess, "" }, "", ""},
		{"process with image", func(s *AppSpec) { s.Driver = DriverProcess }, "image", "must be empty for driver process"},
		{"process without command", func(s *AppSpec) { s.Driver, s.Image, s.Command = DriverProcess, "", nil }, "command", "is required"},
		{"pull secret", func(s *AppSpec) { s.ImagePullSecret = "regcred" }, "", ""},
		{"bad pull secret", func(s *AppSpec) { s.ImagePullSecret = "Reg_Cred" }, "imagePullSecret", "lowercase"},
		{"process read-only", func(s *AppSpec) { s.Driver, s.Image, s.ReadOnlyRootFS = DriverProcess, "", true }, "driver", "host filesystem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.mutate(&s)
			s.Normalize()
			verr := s.Validate()
			if tc.field == "" {
				if verr != nil {
					t.Fatalf("valid spec refused: %v", verr)
				}
				return
			}
			if verr == nil {
				t.Fatalf("accepted, want an error on %s", tc.field)
			}
			for _, e := range verr.Errors {
				if e.Field == tc.field && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("errors %v, want %s: %s", verr, tc.field, tc.msg)
		})
	}
}

func TestRuntimeNames(t *testing.T) {
	if RuntimeBinary(RuntimeSandbox) != "runsc" || RuntimeName("runsc") != RuntimeSandbox ||
		RuntimeBinary(RuntimeCrun) != "crun" || RuntimeName("runc") != RuntimeRunc {
		t.Fatal("runtime name mapping")
	}
}
