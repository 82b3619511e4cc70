package model

import (
	"encoding/json"
	"reflect"
	"testing"
)

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{helloYAML, "{}", "name: a\nimage: b\n", "name: a\nimage: b\nports: [{name: x, containerPort: 1}]\n",
		`{"name":"a","image":"b","resources":{"cpu":"250m","memory":"1Gi"},"health":{"exec":{"command":["true"]}}}`,
		"name: a\nimage: b\nenv: {A: '1'}\nlabels: {'x y': z}\nconstraints: [{label: a, op: in, values: [b]}]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseSpec(data)
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		spec.Normalize()
		if spec.Validate() != nil {
			return
		}
		// A valid spec survives a JSON round trip unchanged.
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSpec(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		again.Normalize()
		if !reflect.DeepEqual(spec, again) {
			t.Fatalf("round trip changed the spec:\n%+v\n%+v", spec, again)
		}
		_ = TemplateHash(spec)
	})
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"64Mi", "1G", "0", "1.5Ki", "-1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err == nil && b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, b)
		}
		if err == nil {
			if back, err := ParseByteSize(b.String()); err != nil || back != b {
				t.Fatalf("%q → %s → %d, %v", s, b, back, err)
			}
		}
	})
}

func FuzzParseCPU(f *testing.F) {
	for _, s := range []string{"0.1", "2", "250m", "x", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCPU(s)
		if err == nil && c < 0 {
			t.Fatalf("ParseCPU(%q) = %d", s, c)
		}
	})
}
