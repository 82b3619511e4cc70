package model

import (
	"strings"
	"testing"
)

// specErrorCase is a spec fragment appended to a base spec and the
// field error it must be refused with (msg: a part of the message).
type specErrorCase struct {
	yaml, field, msg string
}

// expectSpecErrors parses and validates base+c.yaml for every case and
// fails unless it is refused with a ValidationError naming c.field with a
// message containing c.msg.
func expectSpecErrors(t *testing.T, base string, cases []specErrorCase) {
	t.Helper()
	for _, c := range cases {
		spec, err := ParseSpec([]byte(base + c.yaml))
		if err == nil {
			spec.Normalize()
			if verr := spec.Validate(); verr != nil {
				err = verr
			}
		}
		if err == nil {
			t.Errorf("%s: accepted", c.yaml)
			continue
		}
		ve, ok := err.(*ValidationError)
		if !ok {
			t.Errorf("%s: %T %v, want a ValidationError", c.yaml, err, err)
			continue
		}
		found := false
		for _, fe := range ve.Errors {
			if fe.Field == c.field && strings.Contains(fe.Message, c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want %s: ...%s..., got %v", c.yaml, c.field, c.msg, ve)
		}
	}
}
