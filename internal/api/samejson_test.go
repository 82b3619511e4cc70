package api

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

func TestSameJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	in := model.Instance{ID: "web-1", App: "web", Node: "n1", HostPorts: map[string]int{"http": 30000}, CreatedAt: at}
	cases := []struct {
		name string
		a, b model.Instance
		want bool
	}{
		{"equal", in, in, true},
		{"nil and empty map encode alike", model.Instance{ID: "a"}, model.Instance{ID: "a", HostPorts: map[string]int{}}, true},
		{"a field differs", in, func() model.Instance { c := in; c.Node = "n2"; return c }(), false},
		{"a map value differs", in, func() model.Instance { c := in; c.HostPorts = map[string]int{"http": 30001}; return c }(), false},
	}
	for _, c := range cases {
		if got, err := sameJSON(c.a, c.b); err != nil || got != c.want {
			t.Errorf("%s: sameJSON = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}
