package table

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/traffic"
)

func app(ns, name string, rev int64, health bool, routes ...model.Route) model.App {
	a := model.App{Namespace: ns, Name: name, Revision: rev, Spec: model.AppSpec{Name: name, Namespace: ns, Routes: routes}}
	if health {
		a.Spec.Health = &model.HealthCheck{TCP: &model.TCPCheck{Port: "http"}}
	}
	return a
}

func inst(app, id string, rev int64, node string, port int, mut func(*model.Instance)) model.Instance {
	i := model.Instance{ID: id, Namespace: "default", App: app, Revision: rev, Node: node, Desired: model.DesiredRun,
		HostPorts: map[string]int{"http": port}, Status: model.InstanceStatus{State: model.StateRunning, Health: model.HealthHealthy}}
	if mut != nil {
		mut(&i)
	}
	return i
}

func TestBuildSelectsReadyInstances(t *testing.T) {
	s := Snapshot{
		Apps: []model.App{app("default", "web", 2, true, model.Route{Host: "web.test", Port: "http"})},
		Nodes: []model.Node{{Name: "n1", Address: "10.0.0.1", Status: model.NodeReady}, {Name: "n2", Status: model.NodeReady},
			{Name: "down", Address: "10.0.0.9", Status: model.NodeDown}},
		Instances: []model.Instance{
			inst("web", "a", 2, "n1", 20001, nil),
			inst("web", "b", 1, "n2", 20002, nil),
			inst("web", "stop", 2, "n1", 20003, func(i *model.Instance) { i.Desired = model.DesiredStop }),
			inst("web", "unhealthy", 2, "n1", 20004, func(i *model.Instance) { i.Status.Health = model.HealthUnhealthy }),
			inst("web", "starting", 2, "n1", 20005, func(i *model.Instance) { i.Status.State = model.StateStarting }),
			inst("web", "noport", 2, "n1", 0, nil),
			inst("web", "unplaced", 2, "", 20006, nil),
			inst("web", "lostnode", 2, "down", 20007, nil),
			inst("other", "x", 2, "n1", 20008, nil),
		},
	}
	tb := Build(s)
	r := tb.Match("web.test", "/x")
	if r == nil {
		t.Fatal("no route")
	}
	var got []string
	for _, b := range r.Backends {
		got = append(got, b.Instance+"@"+b.Addr)
	}
	if strings.Join(got, " ") != "b@127.0.0.1:20002 a@10.0.0.1:20001" {
		t.Fatalf("backends %v", got)
	}
	if r.Ready[1] != 1 || r.Ready[2] != 1 || len(r.Candidates(traffic.Any)) != 2 || r.Candidates(2)[0].Instance != "a" {
		t.Fatalf("grouping %+v", r.Ready)
	}
	// Without a health check, running is enough.
	s.Apps[0].Spec.Health = nil
	if n := len(Build(s).Match("web.test", "/").Backends); n != 3 {
		t.Fatalf("without health check: %d backends, want 3", n)
	}
}

func TestMatch(t *testing.T) {
	s := Snapshot{Apps: []model.App{
		app("default", "root", 1, false, model.Route{Host: "a.test", Path: "/", Port: "http"}),
		app("default", "api", 1, false, model.Route{Host: "a.test", Path: "/api", Port: "http"},
			model.Route{Host: "a.test", Path: "/api/v2", Port: "http"}),
		app("default", "wild", 1, false, model.Route{Host: "*.a.test", Port: "http"}),
		app("default", "wildapi", 1, false, model.Route{Host: "*.test", Path: "/api", Port: "http"}),
		app("default", "dup", 1, false, model.Route{Host: "a.test", Path: "/api", Port: "http"}),
		app("default", "tcp", 1, false, model.Route{Protocol: "tcp", ListenPort: 9000, Port: "http"}),
	}}
	tb := Build(s)
	cases := []struct{ host, path, want string }{
		{"a.test", "/", "default/root a.test/"},
		{"a.test", "/apix", "default/root a.test/"},
		{"a.test", "/api", "default/api a.test/api"},
		{"a.test", "/api/v1", "default/api a.test/api"},
		{"a.test", "/api/v2/x", "default/api a.test/api/v2"},
		{"x.a.test", "/api", "default/wild *.a.test/"},
		{"y.x.a.test", "/", "default/wild *.a.test/"},
		{"b.test", "/api/z", "default/wildapi *.test/api"},
		{"b.test", "/", ""},
		{"test", "/", ""},
		{"other.example", "/", ""},
	}
	for _, c := range cases {
		got := ""
		if r := tb.Match(c.host, c.path); r != nil {
			got = r.ID
		}
		if got != c.want {
			t.Errorf("Match(%s, %s) = %q, want %q", c.host, c.path, got, c.want)
		}
	}
	if len(tb.Problems) != 1 || !strings.Contains(tb.Problems[0], "app default/dup: host a.test path /api is already routed to app default/api") {
		t.Fatalf("problems %q", tb.Problems)
	}
	if r := tb.TCP[9000]; r == nil || r.ID != "default/tcp tcp:9000" {
		t.Fatalf("tcp %+v", tb.TCP)
	}
	if !tb.HasHost("q.a.test") || tb.HasHost("nothing.example") {
		t.Fatal("HasHost")
	}
}

func TestRolloutSplitOverridesSpecTraffic(t *testing.T) {
	a := app("default", "web", 2, false, model.Route{Host: "web.test", Port: "http",
		Traffic: &model.Traffic{Stable: 2}})
	s := Snapshot{Apps: []model.App{a},
		Instances: []model.Instance{inst("web", "a", 1, "n1", 20001, nil), inst("web", "b", 2, "n1", 20002, nil)},
		Rollouts: []model.Rollout{{Namespace: "default", App: "web", Traffic: &model.Traffic{Stable: 1, Canary: 2,
			Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: 10}}}},
			{Namespace: "default", App: "other", Traffic: &model.Traffic{Stable: 7}}}}
	r := Build(s).Match("web.test", "/")
	if !r.Policy.Split || r.Policy.Stable != 1 || len(r.Policy.Weights) != 1 || r.Policy.Weights[0].Target != 2 {
		t.Fatalf("policy %+v", r.Policy)
	}
	// A finished rollout (no split) leaves the spec's traffic section.
	s.Rollouts[0].Traffic = nil
	if r := Build(s).Match("web.test", "/"); r.Policy.Stable != 2 || len(r.Policy.Weights) != 0 {
		t.Fatalf("policy after the rollout %+v", r.Policy)
	}
}
