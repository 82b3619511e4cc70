package model

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
)

var (
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	envKey    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey  = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	minMemory = ByteSize(6 << 20) // Docker refuses less
	maxCPU    = MilliCPU(1024 * 1000)
)

// validator collects field errors.
type validator struct{ errs []FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate checks every rule and returns all violations, or nil. Call it
// after Normalize; it does not crash on a spec that was not normalized.
func (s *AppSpec) Validate() *ValidationError {
	v := &validator{}
	v.dns("name", s.Name, 63, true)
	v.dns("namespace", s.Namespace, 63, false)
	if s.Driver == DriverProcess {
		v.processImage(s)
	} else {
		v.image(s.Image)
	}
	if len(s.Command) > 0 && strings.TrimSpace(s.Command[0]) == "" {
		v.add("command[0]", "must not be empty")
	}
	v.env(s.Env)
	v.bind(s)
	v.network(s)
	if s.Instances != nil {
		switch n := *s.Instances; {
		case n < 0:
			v.add("instances", "must be >= 0, got %d", n)
		case n > MaxInstancesPerApp:
			v.add("instances", "must be <= %d, got %d", MaxInstancesPerApp, n)
		}
	}
	v.resources(s.Resources)
	ports := v.ports(s.Ports)
	v.health(s.Health, ports)
	v.routes(s.Routes, ports)
	v.rollout(s)
	v.restart(s.Restart)
	v.labels(s.Labels)
	v.constraints(s.Constraints)
	v.placement(s)
	v.job(s)
	v.runtime(s)
	if s.Strategy != "" && s.Strategy != StrategySpread && s.Strategy != StrategyBinpack {
		v.add("strategy", "must be spread or binpack, got %q", s.Strategy)
	}
	if d := s.StopGracePeriod.Duration; d < 0 || d > time.Hour {
		v.add("stopGracePeriod", "must be between 0 and 1h, got %s", d)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

func (v *validator) dns(field, val string, max int, required bool) {
	switch {
	case val == "" && required:
		v.add(field, "is required")
	case val == "":
	case len(val) > max:
		v.add(field, "must be at most %d characters, got %d", max, len(val))
	case !dnsLabel.MatchString(val):
		v.add(field, "must be lowercase letters, digits and '-', starting and ending with a letter or digit; got %q", val)
	}
}

func (v *validator) image(img string) {
	if img == "" {
		v.add("image", "is required")
		return
	}
	if msg := ValidateImageRef(img); msg != "" {
		v.add("image", "%s", msg)
	}
}

// ValidateImageRef returns why ref is not a valid image reference, or "".
func ValidateImageRef(ref string) string {
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Sprintf("invalid image reference %q: %v", ref, err)
	}
	return ""
}

func (v *validator) env(env map[string]string) {
	for _, k := range sortedStrings(env) {
		if !envKey.MatchString(k) {
			v.add(mapPath("env", k), "name must match [A-Za-z_][A-Za-z0-9_]*")
		}
	}
}

func (v *validator) resources(r Resources) {
	if r.GPUs < 0 || r.GPUs > maxGPUs {
		v.add("resources.gpus", "must be between 0 and %d, got %d", maxGPUs, r.GPUs)
	}
	if r.CPU < 0 || r.CPU > maxCPU {
		v.add("resources.cpu", "must be between 0 and %s cores", maxCPU)
	}
	if r.Memory < 0 {
		v.add("resources.memory", "must be >= 0")
	} else if r.Memory > 0 && r.Memory < minMemory {
		v.add("resources.memory", "must be 0 (no limit) or at least 6Mi, got %s", r.Memory)
	}
}

// ports checks ports and returns them by name (for health checks).
func (v *validator) ports(ports []PortSpec) map[string]PortSpec {
	byName := map[string]PortSpec{}
	seenContainer := map[string]bool{}
	seenHost := map[string]bool{}
	for i, p := range ports {
		f := fmt.Sprintf("ports[%d]", i)
		switch {
		case p.Name == "":
			v.add(f+".name", "is required")
		case len(p.Name) > 15 || !dnsLabel.MatchString(p.Name):
			v.add(f+".name", "must be a lowercase name of at most 15 characters (a-z, 0-9, -), got %q", p.Name)
		case byName[p.Name] != (PortSpec{}):
			v.add(f+".name", "duplicate port name %q", p.Name)
		default:
			byName[p.Name] = p
		}
		proto := p.Protocol
		if proto == "" {
			proto = DefaultProtocol
		}
		if proto != "tcp" && proto != "udp" {
			v.add(f+".protocol", "must be tcp or udp, got %q", p.Protocol)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			v.add(f+".containerPort", "must be between 1 and 65535, got %d", p.ContainerPort)
		} else if k := fmt.Sprintf("%d/%s", p.ContainerPort, proto); seenContainer[k] {
			v.add(f+".containerPort", "port %s is declared twice", k)
		} else {
			seenContainer[k] = true
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			v.add(f+".hostPort", "must be between 0 (assign one) and 65535, got %d", p.HostPort)
		} else if k := fmt.Sprintf("%d/%s", p.HostPort, proto); p.HostPort > 0 && seenHost[k] {
			v.add(f+".hostPort", "host port %s is used twice", k)
		} else {
			seenHost[k] = true
		}
	}
	return byName
}

func (v *validator) health(h *HealthCheck, ports map[string]PortSpec) {
	if h == nil {
		return
	}
	n := 0
	if h.HTTP != nil {
		n++
		v.portRef("health.http.port", h.HTTP.Port, ports)
		if h.HTTP.Path != "" && !strings.HasPrefix(h.HTTP.Path, "/") {
			v.add("health.http.path", "must start with /, got %q", h.HTTP.Path)
		}
	}
	if h.TCP != nil {
		n++
		v.portRef("health.tcp.port", h.TCP.Port, ports)
	}
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 || strings.TrimSpace(h.Exec.Command[0]) == "" {
			v.add("health.exec.command", "is required")
		}
	}
	if n != 1 {
		v.add("health", "must have exactly one of http, tcp or exec, got %d", n)
	}
	if h.Interval.Duration < 0 {
		v.add("health.interval", "must be > 0")
	}
	if h.Timeout.Duration < 0 {
		v.add("health.timeout", "must be > 0")
	} else if h.Interval.Duration > 0 && h.Timeout.Duration > h.Interval.Duration {
		v.add("health.timeout", "must not exceed interval (%s), got %s", h.Interval.Duration, h.Timeout.Duration)
	}
	if h.Retries < 0 {
		v.add("health.retries", "must be >= 1, got %d", h.Retries)
	}
	if h.GracePeriod.Duration < 0 {
		v.add("health.gracePeriod", "must be >= 0")
	}
}

func (v *validator) portRef(field, name string, ports map[string]PortSpec) {
	p, ok := ports[name]
	switch {
	case name == "":
		v.add(field, "is required (the name of one of ports)")
	case !ok:
		v.add(field, "names no declared port: %q", name)
	case p.Protocol == "udp":
		v.add(field, "port %q is udp; health checks need a tcp port", name)
	}
}

func (v *validator) restart(r *RestartPolicy) {
	if r == nil {
		return
	}
	switch r.Policy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		v.add("restart.policy", "must be always, on-failure or never, got %q", r.Policy)
	}
	if r.InitialDelay.Duration < 0 {
		v.add("restart.initialDelay", "must be >= 0")
	}
	if r.MaxDelay.Duration < 0 {
		v.add("restart.maxDelay", "must be >= 0")
	} else if r.MaxDelay.Duration > 0 && r.MaxDelay.Duration < r.InitialDelay.Duration {
		v.add("restart.maxDelay", "must be >= initialDelay (%s), got %s", r.InitialDelay.Duration, r.MaxDelay.Duration)
	}
}

func (v *validator) labels(labels map[string]string) {
	for _, k := range sortedStrings(labels) {
		f := mapPath("labels", k)
		switch {
		case k == "" || len(k) > 253 || !labelKey.MatchString(k):
			v.add(f, "key must be 1-253 characters of letters, digits, '.', '_', '/' and '-'")
		case strings.HasPrefix(k, "berth."):
			v.add(f, "keys starting with \"berth.\" are reserved for berth")
		}
	}
}

func sortedStrings(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// CheckDNSLabel returns why s is not a DNS label (names, namespaces), or "".
func CheckDNSLabel(s string) string {
	v := &validator{}
	v.dns("name", s, 63, true)
	if len(v.errs) == 0 {
		return ""
	}
	return v.errs[0].Message
}

var secretKey = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)

// ValidSecretKey reports whether k may name a value in a secret.
func ValidSecretKey(k string) bool { return secretKey.MatchString(k) }
