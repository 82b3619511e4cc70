package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

const helloYAML = `name: hello
image: berth-test/busybox:latest
command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
instances: 2
resources: {cpu: 0.1, memory: 64Mi}
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}}
`

func TestHelloExampleApplies(t *testing.T) {
	s, err := ParseSpec([]byte(helloYAML))
	if err != nil {
		t.Fatal(err)
	}
	s.Normalize()
	if verr := s.Validate(); verr != nil {
		t.Fatal(verr)
	}
	if s.Resources.CPU != 100 || s.Resources.Memory != 64<<20 || *s.Instances != 2 || s.Ports[0].Protocol != "tcp" {
		t.Fatalf("parsed %+v", s)
	}
	if s.Health.Interval.Duration != DefaultHealthInterval || s.Restart.Policy != RestartAlways || s.Namespace != "default" {
		t.Fatalf("defaults not applied: %+v %+v", s.Health, s.Restart)
	}
}

func TestParseYAMLAndJSONAgree(t *testing.T) {
	y, err := ParseSpec([]byte(helloYAML))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(y)
	j, err := ParseSpec(js)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y, j) {
		t.Fatalf("YAML %+v\nJSON %+v", y, j)
	}
}

// TestParseErrorsNameTheField covers strict decoding.
func TestParseErrorsNameTheField(t *testing.T) {
	cases := []struct{ body, field, msg string }{
		{"name: a\nimage: b\nimagee: c\n", "imagee", "unknown field"},
		{"name: a\nimage: b\nports: [{name: http, containerPort: 80, nmae: x}]\n", "ports[0].nmae", "unknown field"},
		{"name: a\nimage: b\nhealth: {http: {port: http, paht: /}}\n", "health.http.paht", "unknown field"},
		{"name: a\nimage: b\nImage: c\n", "Image", `did you mean "image"`},
		{"name: a\nimage: b\nresources: {memory: 64Qi}\n", "resources.memory", "invalid size"},
		{"name: a\nimage: b\nresources: {cpu: lots}\n", "resources.cpu", "invalid cpu"},
		{"name: a\nimage: b\ninstances: two\n", "instances", "must be a whole number"},
		{"name: a\nimage: b\ninstances: 1.5\n", "instances", "must be a whole number"},
		{"name: a\nimage: b\nports: {name: x}\n", "ports", "must be a list"},
		{"name: a\nimage: b\nenv: [A, B]\n", "env", "must be a map"},
		{"name: a\nimage: b\nenv: {A: {x: 1}}\n", "env.A", "must be a string"},
		{"name: a\nimage: b\nhealth: {interval: soon}\n", "health.interval", "invalid duration"},
		{"name: [a]\nimage: b\n", "name", "must be a string"},
		{"- a\n- b\n", "", "must be an object"},
		{"", "", "empty spec"},
		{"name: a\n---\nname: b\n", "", "more than one YAML document"},
		{"name: a\n  image: : b\n", "", "not valid YAML"},
	}
	for _, tc := range cases {
		_, err := ParseSpec([]byte(tc.body))
		verr, ok := err.(*ValidationError)
		if !ok {
			t.Errorf("%q: error %v, want *ValidationError", tc.body, err)
			continue
		}
		if verr.Errors[0].Field != tc.field || !strings.Contains(verr.Errors[0].Message, tc.msg) {
			t.Errorf("%q: got %+v, want field %q with %q", tc.body, verr.Errors, tc.field, tc.msg)
		}
	}
}

func TestParseAcceptsLeadingSeparatorAndNulls(t *testing.T) {
	if _, err := ParseSpec([]byte("---\nname: a\nimage: b\nenv: null\n")); err != nil {
		t.Fatal(err)
	}
}

// valid returns a valid normalized base spec to mutate.
func valid() AppSpec {
	s, err := ParseSpec([]byte(helloYAML))
	if err != nil {
		panic(err)
	}
	return s
}

func TestValidateRules(t *testing.T) {
	n := func(i int) *int { return &i }
	cases := []struct {
		name   string
		mutate func(*AppSpec)
		field  string
	}{
		{"missing name", func(s *AppSpec) { s.Name = "" }, "name"},
		{"bad name", func(s *AppSpec) { s.Name = "Hello_World" }, "name"},
		{"long name", func(s *AppSpec) { s.Name = strings.Repeat("a", 64) }, "name"},
		{"bad namespace", func(s *AppSpec) { s.Namespace = "-x" }, "namespace"},
		{"missing image", func(s *AppSpec) { s.Image = "" }, "image"},
		{"bad image", func(s *AppSpec) { s.Image = "not a//valid:ref" }, "image"},
		{"empty command", func(s *AppSpec) { s.Command = []string{""} }, "command[0]"},
		{"bad env key", func(s *AppSpec) { s.Env = map[string]string{"1X": "v"} }, `env["1X"]`},
		{"negative instances", func(s *AppSpec) { s.Instances = n(-1) }, "instances"},
		{"too many instances", func(s *AppSpec) { s.Instances = n(MaxInstancesPerApp + 1) }, "instances"},
		{"negative cpu", func(s *AppSpec) { s.Resources.CPU = -1 }, "resources.cpu"},
		{"tiny memory", func(s *AppSpec) { s.Resources.Memory = 1 << 20 }, "resources.memory"},
		{"port name missing", func(s *AppSpec) { s.Ports[0].Name = "" }, "ports[0].name"},
		{"port name bad", func(s *AppSpec) { s.Ports[0].Name = "HTTP" }, "ports[0].name"},
		{"duplicate port name", func(s *AppSpec) {
			s.Ports = append(s.Ports, PortSpec{Name: "http", ContainerPort: 81})
		}, "ports[1].name"},
		{"container port range", func(s *AppSpec) { s.Ports[0].ContainerPort = 70000 }, "ports[0].containerPort"},
		{"duplicate container port", func(s *AppSpec) {
			s.Ports = append(s.Ports, PortSpec{Name: "alt", ContainerPort: 8080})
		}, "ports[1].containerPort"},
		{"protocol", func(s *AppSpec) { s.Ports[0].Protocol = "sctp" }, "ports[0].protocol"},
		{"host port range", func(s *AppSpec) { s.Ports[0].HostPort = -1 }, "ports[0].hostPort"},
		{"duplicate host port", func(s *AppSpec) {
			s.Ports[0].HostPort = 9000
			s.Ports = append(s.Ports, PortSpec{Name: "alt", ContainerPort: 81, HostPort: 9000})
		}, "ports[1].hostPort"},
		{"two checks", func(s *AppSpec) { s.Health.TCP = &TCPCheck{Port: "http"} }, "health"},
		{"no check", func(s *AppSpec) { s.Health.HTTP = nil }, "health"},
		{"health unknown port", func(s *AppSpec) { s.Health.HTTP.Port = "web" }, "health.http.port"},
		{"health path", func(s *AppSpec) { s.Health.HTTP.Path = "health" }, "health.http.path"},
		{"health udp port", func(s *AppSpec) {
			s.Ports[0].Protocol = "udp"
			s.Health.HTTP = nil
			s.Health.TCP = &TCPCheck{Port: "http"}
		}, "health.tcp.port"},
		{"exec empty", func(s *AppSpec) { s.Health.HTTP = nil; s.Health.Exec = &ExecCheck{} }, "health.exec.command"},
		{"timeout over interval", func(s *AppSpec) { s.Health.Interval = D(time.Second); s.Health.Timeout = D(2 * time.Second) }, "health.timeout"},
		{"negative interval", func(s *AppSpec) { s.Health.Interval = D(-time.Second) }, "health.interval"},
		{"negative retries", func(s *AppSpec) { s.Health.Retries = -1 }, "health.retries"},
		{"negative grace", func(s *AppSpec) { s.Health.GracePeriod = D(-time.Second) }, "health.gracePeriod"},
		{"restart policy", func(s *AppSpec) { s.Restart = &RestartPolicy{Policy: "sometimes"} }, "restart.policy"},
		{"restart delays", func(s *AppSpec) {
			s.Restart = &RestartPolicy{InitialDelay: D(time.Minute), MaxDelay: D(time.Second)}
		}, "restart.maxDelay"},
		{"negative initial delay", func(s *AppSpec) { s.Restart = &RestartPolicy{InitialDelay: D(-1)} }, "restart.initialDelay"},
		{"reserved label", func(s *AppSpec) { s.Labels = map[string]string{"berth.app": "x"} }, `labels["berth.app"]`},
		{"bad label key", func(s *AppSpec) { s.Labels = map[string]string{"a b": "x"} }, `labels["a b"]`},
		{"constraint label", func(s *AppSpec) { s.Constraints = []Constraint{{Op: OpEquals, Value: "x"}} }, "constraints[0].label"},
		{"constraint op", func(s *AppSpec) { s.Constraints = []Constraint{{Label: "a", Op: "like"}} }, "constraints[0].op"},
		{"constraint value", func(s *AppSpec) { s.Constraints = []Constraint{{Label: "a", Op: OpEquals}} }, "constraints[0].value"},
		{"constraint values", func(s *AppSpec) { s.Constraints = []Constraint{{Label: "a", Op: OpIn}} }, "constraints[0].values"},
		{"constraint values with equals", func(s *AppSpec) {
			s.Constraints = []Constraint{{Label: "a", Op: OpNotEquals, Value: "x", Values: []string{"y"}}}
		}, "constraints[0].values"},
		{"driver", func(s *AppSpec) { s.Driver = "Docker!" }, "driver"},
		{"strategy", func(s *AppSpec) { s.Strategy = "random" }, "strategy"},
		{"stop grace", func(s *AppSpec) { s.StopGracePeriod = D(2 * time.Hour) }, "stopGracePeriod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.mutate(&s)
			verr := s.Validate()
			if verr == nil {
				t.Fatal("accepted")
			}
			for _, f := range verr.Errors {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("errors %+v do not name %q", verr.Errors, tc.field)
		})
	}
}

func TestValidateCollectsAllErrors(t *testing.T) {
	s := AppSpec{Instances: new(int)}
	*s.Instances = -3
	verr := s.Validate()
	if verr == nil || len(verr.Errors) != 3 { // name, image, instances
		t.Fatalf("got %v", verr)
	}
	if !strings.Contains(verr.Error(), "instances: must be >= 0") {
		t.Fatalf("message %q", verr.Error())
	}
}

func TestTemplateHash(t *testing.T) {
	a, b := valid(), valid()
	a.Normalize()
	b.Normalize()
	if TemplateHash(a) != TemplateHash(b) {
		t.Fatal("same spec, different hash")
	}
	five := 5
	b.Instances = &five
	if TemplateHash(a) != TemplateHash(b) {
		t.Fatal("instance count changed the template hash")
	}
	b.Env = map[string]string{"X": "1"}
	if TemplateHash(a) == TemplateHash(b) {
		t.Fatal("env change did not change the hash")
	}
	// Key order in the document does not matter.
	c, err := ParseSpec([]byte("image: berth-test/busybox:latest\nname: hello\ninstances: 2\nhealth: {http: {path: /, port: http}}\nports: [{containerPort: 8080, name: http}]\nresources: {memory: 64Mi, cpu: 0.1}\ncommand: [\"sh\", \"-c\", \"mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if TemplateHash(a) != TemplateHash(c) {
		t.Fatal("reordered spec hashes differently")
	}
}

func TestQuantities(t *testing.T) {
	cpu := map[string]MilliCPU{"0.1": 100, "2": 2000, "250m": 250, "0": 0, " 1.5 ": 1500}
	for in, want := range cpu {
		if got, err := ParseCPU(in); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5m", "NaN", "Inf", "1e9"} {
		if _, err := ParseCPU(bad); err == nil {
			t.Errorf("ParseCPU(%q) accepted", bad)
		}
	}
	sizes := map[string]ByteSize{"64Mi": 64 << 20, "1G": 1e9, "1Gi": 1 << 30, "512": 512, "1.5Ki": 1536, "2k": 2000, "3T": 3e12}
	for in, want := range sizes {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Mi", "64Qi", "-1Mi", "1e3", "inf", "NaN", "99999999999Ti"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64Mi" {
		t.Errorf("String = %s", s)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"1m30s"`), &d); err != nil || d.Duration != 90*time.Second {
		t.Errorf("duration string: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`2.5`), &d); err != nil || d.Duration != 2500*time.Millisecond {
		t.Errorf("duration seconds: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestByteSizeHuman(t *testing.T) {
	for b, want := range map[ByteSize]string{512: "512", 1536: "1.5Ki", 64 << 20: "64Mi", 25275387904: "23.5Gi"} {
		if got := b.Human(); got != want {
			t.Errorf("%d.Human() = %s, want %s", int64(b), got, want)
		}
	}
}
