package model

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
func (e *ValidationError) Error() string { panic("TODO(helper)") }

// ParseSpec decodes a spec from YAML or JSON strictly: unknown fields,
// wrong types and bad quantities are *ValidationError naming the field.
// It does not call Validate.
func ParseSpec(data []byte) (AppSpec, error) { panic("TODO(helper)") }

// Normalize fills defaults (namespace, driver, protocol, health timings,
// restart policy, stop grace period) so equal intents hash equally.
func (s *AppSpec) Normalize() { panic("TODO(helper)") }

// Validate checks every rule and returns all violations, or nil.
func (s *AppSpec) Validate() *ValidationError { panic("TODO(helper)") }

// TemplateHash hashes everything but Instances; equal hashes mean an
// identical template, so no new revision is needed.
func TemplateHash(s AppSpec) string { panic("TODO(helper)") }
