package model

import "fmt"

// maxGPUs bounds resources.gpus.
const maxGPUs = 64

// Spread prefers nodes whose value of Field has the fewest instances of
// the app, e.g. `spread: {field: zone}` balances an app across zones. It
// is a preference: a zone that is full does not block placement.
type Spread struct {
	// Field is any constraint field: hostname, region, zone, arch, os,
	// kernel, a label key or label:<key>.
	Field string `json:"field"`
}

// Affinity places an app relative to another app's instances: on nodes
// whose value of Field also runs App (affinity) or does not (Anti).
//
//	affinity:
//	  - {app: db, field: zone}                       # prefer db's zones
//	  - {app: web, field: hostname, anti: true, required: true}
type Affinity struct {
	// App is the other app's name.
	App string `json:"app"`
	// Namespace of App; empty means the app's own namespace.
	Namespace string `json:"namespace,omitempty"`
	// Field is the attribute that defines "near": hostname (default: the
	// same node), zone, region or any label.
	Field string `json:"field,omitempty"`
	// Anti places away from App instead of near it.
	Anti bool `json:"anti,omitempty"`
	// Required makes it a filter (refuse nodes that break it) instead of a
	// preference (score).
	Required bool `json:"required,omitempty"`
}

// AffinityField returns the field, hostname when empty.
func (a *Affinity) AffinityField() string {
	if a.Field == "" {
		return FieldHostname
	}
	return a.Field
}

// placement checks spread and affinity.
func (v *validator) placement(s *AppSpec) {
	if s.Spread != nil {
		if msg := validField(s.Spread.Field); msg != "" {
			v.add("spread.field", "%s", msg)
		}
	}
	for i, a := range s.Affinity {
		f := fmt.Sprintf("affinity[%d]", i)
		v.dns(f+".app", a.App, 63, true)
		v.dns(f+".namespace", a.Namespace, 63, false)
		if a.Field != "" {
			if msg := validField(a.Field); msg != "" {
				v.add(f+".field", "%s", msg)
			}
		}
	}
}
