package model

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Drivers berth ships.
const (
	DriverDocker  = "docker"
	DriverOCI     = "oci"
	DriverProcess = "process"
)

// OCI runtimes a spec can ask for with driver oci.
const (
	RuntimeRunc    = "runc"
	RuntimeCrun    = "crun"
	RuntimeSandbox = "sandbox" // gVisor's runsc
)

// RuntimeBinary maps a spec's runtime name to the binary that provides it.
func RuntimeBinary(runtime string) string {
	if runtime == RuntimeSandbox {
		return "runsc"
	}
	return runtime
}

// RuntimeName maps a runtime binary to the name specs use for it.
func RuntimeName(binary string) string {
	if binary == "runsc" {
		return RuntimeSandbox
	}
	return binary
}

var userSpec = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$`)

// runtime checks the fields that choose and shape the runtime.
func (v *validator) runtime(s *AppSpec) {
	switch s.Driver {
	case "", DriverDocker, DriverOCI, DriverProcess:
	default:
		if !dnsLabel.MatchString(s.Driver) {
			v.add("driver", "must be docker, oci or process, got %q", s.Driver)
		}
	}
	switch s.Runtime {
	case "":
	case RuntimeRunc, RuntimeCrun, RuntimeSandbox:
		if s.Driver != DriverOCI {
			v.add("runtime", "only applies to driver oci (driver is %q)", orDefault(s.Driver, DefaultDriver))
		}
	default:
		v.add("runtime", "must be runc, crun or sandbox, got %q", s.Runtime)
	}
	if s.User != "" && !userSpec.MatchString(s.User) {
		v.add("user", "must be a user name or uid, optionally :group or :gid, got %q", s.User)
	}
	if s.WorkingDir != "" && !path.IsAbs(s.WorkingDir) {
		v.add("workingDir", "must be an absolute path, got %q", s.WorkingDir)
	}
	seen := map[string]bool{}
	for i, p := range s.Tmpfs {
		f := fmt.Sprintf("tmpfs[%d]", i)
		switch {
		case !path.IsAbs(p) || path.Clean(p) == "/":
			v.add(f, "must be an absolute path other than /, got %q", p)
		case seen[path.Clean(p)]:
			v.add(f, "path %q is listed twice", p)
		}
		seen[path.Clean(p)] = true
	}
	if s.ImagePullSecret != "" {
		if msg := CheckDNSLabel(s.ImagePullSecret); msg != "" {
			v.add("imagePullSecret", "%s", msg)
		} else if s.Driver == DriverProcess {
			v.add("imagePullSecret", "driver process pulls no image")
		}
	}
	if s.Driver == DriverProcess && (s.ReadOnlyRootFS || len(s.Tmpfs) > 0) {
		v.add("driver", "process runs on the host filesystem; readOnlyRootfs and tmpfs need driver oci or docker")
	}
}

// processImage checks a process-driver spec: no image, a command to run.
func (v *validator) processImage(s *AppSpec) {
	if s.Image != "" {
		v.add("image", "must be empty for driver process (it runs a host command), got %q", s.Image)
	}
	if len(s.Command) == 0 || strings.TrimSpace(s.Command[0]) == "" {
		v.add("command", "is required for driver process")
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
