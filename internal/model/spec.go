package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// FieldError names one invalid field by its path in the spec (for example
// "ports[1].name") and says what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is returned for a spec that cannot be accepted. The API
// turns it into a 400 whose body lists every FieldError.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
}

// Error joins the field errors into one line.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		if f.Field == "" {
			parts[i] = f.Message
		} else {
			parts[i] = f.Field + ": " + f.Message
		}
	}
	return "invalid spec: " + strings.Join(parts, "; ")
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Errors: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// maxSpecBytes bounds a spec document.
const maxSpecBytes = 1 << 20

var secondDocument = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// ParseSpec decodes a spec from YAML or JSON strictly: unknown fields,
// wrong types and bad quantities are *ValidationError naming the field.
// It does not call Validate.
func ParseSpec(data []byte) (AppSpec, error) {
	var spec AppSpec
	if len(data) > maxSpecBytes {
		return spec, invalid("", "spec larger than 1 MiB")
	}
	if err := singleDocument(data); err != nil {
		return spec, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return spec, invalid("", "not valid YAML or JSON: %s", cleanYAMLError(err))
	}
	var generic any
	if err := json.Unmarshal(js, &generic); err != nil {
		return spec, invalid("", "not valid YAML or JSON: %v", err)
	}
	if generic == nil {
		return spec, invalid("", "empty spec: expected at least name and image")
	}
	var errs []FieldError
	checkShape(specType, generic, "", &errs)
	if len(errs) > 0 {
		return spec, &ValidationError{Errors: errs}
	}
	if err := json.Unmarshal(js, &spec); err != nil {
		// checkShape should have caught this; report it rather than panic.
		return AppSpec{}, invalid("", "%v", err)
	}
	return spec, nil
}

// singleDocument refuses YAML streams with more than one document.
func singleDocument(data []byte) error {
	locs := secondDocument.FindAllIndex(data, -1)
	for _, loc := range locs {
		before := strings.TrimSpace(stripYAMLComments(string(data[:loc[0]])))
		if before != "" {
			return invalid("", "more than one YAML document; apply them one at a time")
		}
	}
	return nil
}

func stripYAMLComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	return strings.TrimPrefix(s, "yaml: ")
}

// Normalize fills defaults so equal intents hash equally. Instances is
// left as given (nil means DefaultInstances; see App.DesiredInstances).
func (s *AppSpec) Normalize() {
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.Driver == "" {
		s.Driver = DefaultDriver
	}
	if s.Strategy == "" {
		s.Strategy = StrategySpread
	}
	s.normalizeJob()
	s.normalizeNetwork()
	if s.StopGracePeriod.Duration == 0 {
		s.StopGracePeriod = D(DefaultStopGracePeriod)
	}
	for i := range s.Ports {
		if s.Ports[i].Protocol == "" {
			s.Ports[i].Protocol = DefaultProtocol
		}
	}
	if h := s.Health; h != nil {
		if h.HTTP != nil && h.HTTP.Path == "" {
			h.HTTP.Path = DefaultHTTPHealthPath
		}
		if h.Interval.Duration == 0 {
			h.Interval = D(DefaultHealthInterval)
		}
		if h.Timeout.Duration == 0 {
			h.Timeout = D(DefaultHealthTimeout)
			if h.Interval.Duration > 0 && h.Timeout.Duration > h.Interval.Duration {
				h.Timeout = h.Interval
			}
		}
		if h.Retries == 0 {
			h.Retries = DefaultHealthRetries
		}
	}
	if s.Restart == nil {
		s.Restart = &RestartPolicy{}
	}
	if s.Restart.Policy == "" {
		s.Restart.Policy = RestartAlways
	}
	if s.Restart.InitialDelay.Duration == 0 {
		s.Restart.InitialDelay = D(DefaultRestartInitial)
	}
	if s.Restart.MaxDelay.Duration == 0 {
		s.Restart.MaxDelay = D(DefaultRestartMax)
		if s.Restart.MaxDelay.Duration < s.Restart.InitialDelay.Duration {
			s.Restart.MaxDelay = s.Restart.InitialDelay
		}
	}
	// Empty and missing collections mean the same; store them one way.
	if len(s.Command) == 0 {
		s.Command = nil
	}
	if len(s.Args) == 0 {
		s.Args = nil
	}
	if len(s.Ports) == 0 {
		s.Ports = nil
	}
	if len(s.Constraints) == 0 {
		s.Constraints = nil
	}
	if len(s.Affinity) == 0 {
		s.Affinity = nil
	}
	if len(s.Env) == 0 {
		s.Env = nil
	}
	if len(s.Labels) == 0 {
		s.Labels = nil
	}
	if len(s.Tmpfs) == 0 {
		s.Tmpfs = nil
	}
	if len(s.Bind) == 0 {
		s.Bind = nil
	}
}

// TemplateHash hashes everything but Instances, Routes, Rollout and
// AllowFrom (what runs, not how it is reached or replaced); equal hashes
// mean an identical template, so no new revision is needed.
func TemplateHash(s AppSpec) string {
	s.Instances, s.Routes, s.Rollout, s.AllowFrom = nil, nil, nil, nil
	b, err := json.Marshal(s)
	if err != nil {
		panic(errors.New("model: spec does not marshal: " + err.Error()))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
