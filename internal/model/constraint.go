package model

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Constraint operators. The lowercase ones are berth's original label
// operators; the uppercase ones are Marathon's.
const (
	OpEquals    = "equals"
	OpNotEquals = "notEquals"
	OpIn        = "in"
	// OpUnique allows at most one instance of the app per distinct value.
	OpUnique = "UNIQUE"
	// OpCluster keeps every instance on nodes with one value: Value, or
	// the value of the first placed instance when Value is empty.
	OpCluster = "CLUSTER"
	// OpGroupBy spreads instances evenly across the values; Value, when
	// set, is the number of groups to wait for.
	OpGroupBy = "GROUP_BY"
	// OpLike requires the value to match the regular expression Value
	// (whole value).
	OpLike = "LIKE"
	// OpUnlike refuses nodes whose value matches the regular expression
	// Value; nodes without the attribute are accepted.
	OpUnlike = "UNLIKE"
	// OpMaxPer allows at most Value instances per distinct value.
	OpMaxPer = "MAX_PER"
	// OpIs requires the value to equal Value.
	OpIs = "IS"
)

// Node attribute fields a constraint, spread or affinity can name. Any
// other field is a node label key; "label:<key>" names a label explicitly
// (e.g. a label called "zone").
const (
	FieldHostname = "hostname" // the node's name (unique per node)
	FieldRegion   = "region"   // Node.Region, else label berth.region
	FieldZone     = "zone"     // Node.Zone, else label berth.zone
	FieldArch     = "arch"     // Node.Arch (amd64, arm64 ...)
	FieldOS       = "os"       // Node.OS (linux)
	FieldKernel   = "kernel"   // Node.Kernel (uname -r)
	// LabelFieldPrefix marks an explicit label field.
	LabelFieldPrefix = "label:"
)

// Constraint restricts placement by a node attribute or label. Either
// Field (any attribute or label) or Label (a label key, the original
// form) names what is compared.
//
//	constraints:
//	  - {field: zone, op: GROUP_BY}
//	  - {field: hostname, op: UNIQUE}
//	  - {field: "label:disk", op: LIKE, value: "ssd|nvme"}
//	  - {label: tier, op: equals, value: gold}
type Constraint struct {
	// Field is hostname, region, zone, arch, os, kernel, label:<key> or a
	// bare label key.
	Field string `json:"field,omitempty"`
	// Label is a node label's key (same as field "label:<key>").
	Label string `json:"label,omitempty"`
	// Op is one of the Op constants.
	Op string `json:"op"`
	// Value is the operand: the value for equals, notEquals and IS, the
	// regular expression for LIKE and UNLIKE, the count for MAX_PER, the
	// optional value for CLUSTER and the optional group count for GROUP_BY.
	Value Scalar `json:"value,omitempty"`
	// Values is the set for in.
	Values []string `json:"values,omitempty"`
}

// Scalar is a string that may be written as a YAML/JSON number or
// boolean too (`value: 3` for MAX_PER); it is stored as a string.
type Scalar string

// UnmarshalJSON accepts a string, a number or a boolean.
func (s *Scalar) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = Scalar(str)
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v.(type) {
	case float64, bool:
		*s = Scalar(strings.TrimSpace(string(b)))
		return nil
	}
	return fmt.Errorf("must be a string or a number, got %s", strings.TrimSpace(string(b)))
}

// Target is the field the constraint compares: Field, or
// "label:"+Label in the original form.
func (c *Constraint) Target() string {
	if c.Field != "" {
		return c.Field
	}
	return LabelFieldPrefix + c.Label
}

// Static reports whether the constraint depends only on the node (not on
// where other instances run).
func (c *Constraint) Static() bool {
	switch c.Op {
	case OpUnique, OpGroupBy, OpMaxPer:
		return false
	case OpCluster:
		return c.Value != ""
	}
	return true
}

// FieldName returns the display name of a field: the label key for
// "label:<key>", else the field itself.
func FieldName(field string) string {
	return strings.TrimPrefix(field, LabelFieldPrefix)
}

// Attribute returns the node's value of field and whether it has one.
// Builtin fields fall back to the labels berth.<field>, then <field>
// (region, zone, arch, os, kernel), so operators can set them with labels.
func (n *Node) Attribute(field string) (string, bool) {
	var v string
	switch field {
	case FieldHostname:
		return n.Name, n.Name != ""
	case FieldRegion:
		v = n.Region
	case FieldZone:
		v = n.Zone
	case FieldArch:
		v = n.Arch
	case FieldOS:
		v = n.OS
	case FieldKernel:
		v = n.Kernel
	default:
		v, ok := n.Labels[strings.TrimPrefix(field, LabelFieldPrefix)]
		return v, ok
	}
	if v != "" {
		return v, true
	}
	if v, ok := n.Labels["berth."+field]; ok {
		return v, true
	}
	v, ok := n.Labels[field]
	return v, ok
}

// LikePattern compiles the regular expression of LIKE and UNLIKE so it
// must match the whole value, as in Marathon.
func LikePattern(expr string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + expr + ")$")
}

var fieldKey = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)

// validField checks a field name; it returns "" or what is wrong.
func validField(f string) string {
	key := strings.TrimPrefix(f, LabelFieldPrefix)
	switch {
	case f == "":
		return "is required"
	case key == "" || len(key) > 253 || !fieldKey.MatchString(key):
		return fmt.Sprintf("must be hostname, region, zone, arch, os, kernel, a label key or label:<key>; got %q", f)
	}
	return ""
}

func (v *validator) constraints(cs []Constraint) {
	for i, c := range cs {
		f := fmt.Sprintf("constraints[%d]", i)
		switch {
		case c.Field != "" && c.Label != "":
			v.add(f+".field", "set field or label, not both")
		case c.Field == "" && c.Label == "" && (c.Op == OpEquals || c.Op == OpNotEquals || c.Op == OpIn):
			v.add(f+".label", "is required (or field: hostname, region, zone, arch, os, kernel or a label key)")
		case c.Field == "" && c.Label == "":
			v.add(f+".field", "is required (hostname, region, zone, arch, os, kernel or a label key)")
		case c.Field != "":
			if msg := validField(c.Field); msg != "" {
				v.add(f+".field", "%s", msg)
			}
		}
		if c.Op != OpIn && len(c.Values) > 0 {
			v.add(f+".values", "is only for op in; use value with %s", c.Op)
		}
		switch c.Op {
		case OpEquals, OpNotEquals, OpIs:
			if c.Value == "" {
				v.add(f+".value", "is required for %s", c.Op)
			}
		case OpIn:
			if len(c.Values) == 0 {
				v.add(f+".values", "must list at least one value for op in")
			}
			if c.Value != "" {
				v.add(f+".value", "is not used with op in; use values")
			}
		case OpLike, OpUnlike:
			if c.Value == "" {
				v.add(f+".value", "is required for %s (a regular expression)", c.Op)
			} else if _, err := LikePattern(string(c.Value)); err != nil {
				v.add(f+".value", "is not a valid regular expression: %v", err)
			}
		case OpMaxPer:
			if n, err := strconv.Atoi(string(c.Value)); err != nil || n < 1 {
				v.add(f+".value", "must be a whole number >= 1 for MAX_PER, got %q", c.Value)
			}
		case OpGroupBy:
			if n, err := strconv.Atoi(string(c.Value)); c.Value != "" && (err != nil || n < 1) {
				v.add(f+".value", "must be empty or the number of groups (>= 1) for GROUP_BY, got %q", c.Value)
			}
		case OpUnique:
			if c.Value != "" {
				v.add(f+".value", "is not used with UNIQUE")
			}
		case OpCluster:
		default:
			v.add(f+".op", "must be one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS, equals, notEquals, in; got %q", c.Op)
		}
	}
}
