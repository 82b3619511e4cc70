package router

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

// TestTrafficRulesThroughRouter: revision 1 (stable) and 2 (canary) run
// side by side; header, cookie and source-CIDR rules route exactly, and a
// 10% weight over 2,000 requests lands within 3 standard deviations.
func TestTrafficRulesThroughRouter(t *testing.T) {
	st := newStore(t)
	tr := &model.Traffic{Stable: 1, Canary: 2, Rules: []model.TrafficRule{
		{Header: &model.ValueMatch{Name: "X-Canary", Value: "1"}, Target: model.RefCanary},
		{Header: &model.ValueMatch{Name: "X-Build", Regex: `^beta-\d+$`}, Target: model.RefCanary},
		{Cookie: &model.ValueMatch{Name: "track", Value: "canary"}, Target: model.RefCanary},
	}}
	cidrIn := &model.Traffic{Stable: 1, Canary: 2, Rules: []model.TrafficRule{{SourceCIDRs: []string{"127.0.0.0/8"}, Target: model.RefCanary}}}
	cidrOut := &model.Traffic{Stable: 1, Canary: 2, Rules: []model.TrafficRule{{SourceCIDRs: []string{"10.0.0.0/8"}, Target: model.RefCanary}}}
	weighted := &model.Traffic{Stable: 1, Canary: 2, Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: 10}}}
	putApp(t, st, "rel", 2,
		model.Route{Host: "rules.test", Port: "http", Traffic: tr},
		model.Route{Host: "cidr-in.test", Port: "http", Traffic: cidrIn},
		model.Route{Host: "cidr-out.test", Port: "http", Traffic: cidrOut},
		model.Route{Host: "weights.test", Port: "http", Traffic: weighted},
		model.Route{Host: "plain.test", Port: "http"})
	v1, v2 := backend(t, "v1"), backend(t, "v2")
	putInstance(t, st, "rel", "r1", 1, hostPort(v1))
	putInstance(t, st, "rel", "r2", 2, hostPort(v2))
	r := startRouter(t, st, Options{Rand: rand.New(rand.NewPCG(42, 1))})
	eventually(t, "both revisions", func() bool { return backendsOf(r, "rules.test", "/") == "r1,r2" })
	c := newClient(t)

	count := func(host string, n int, hdr ...string) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			code, body := get(t, c, r, host, "/", hdr...)
			if code != 200 {
				t.Fatalf("%s: %d %q", host, code, body)
			}
			got[body]++
		}
		return got
	}
	exact := []struct {
		name, host string
		hdr        []string
		v1, v2     int
	}{
		{"no rule matches: stable", "rules.test", nil, 50, 0},
		{"header equals", "rules.test", []string{"X-Canary", "1"}, 0, 50},
		{"header other value", "rules.test", []string{"X-Canary", "yes"}, 50, 0},
		{"header regex", "rules.test", []string{"X-Build", "beta-12"}, 0, 50},
		{"header regex no match", "rules.test", []string{"X-Build", "beta-12x"}, 50, 0},
		{"cookie", "rules.test", []string{"Cookie", "session=1; track=canary"}, 0, 50},
		{"cookie other value", "rules.test", []string{"Cookie", "track=stable"}, 50, 0},
		{"source in CIDR", "cidr-in.test", nil, 0, 50},
		{"source outside CIDR", "cidr-out.test", nil, 50, 0},
	}
	for _, e := range exact {
		got := count(e.host, 50, e.hdr...)
		if got["v1"] != e.v1 || got["v2"] != e.v2 {
			t.Errorf("%s: %v, want v1=%d v2=%d", e.name, got, e.v1, e.v2)
		}
	}
	// No traffic section: both revisions share (a rolling update).
	if got := count("plain.test", 10); got["v1"] != 5 || got["v2"] != 5 {
		t.Errorf("no traffic section: %v, want 5/5", got)
	}

	const n = 2000
	got := count("weights.test", n)
	sigma := math.Sqrt(n * 0.1 * 0.9) // 13.4
	if math.Abs(float64(got["v2"])-n*0.1) > 3*sigma || got["v1"]+got["v2"] != n {
		t.Fatalf("10%% canary over %d: %v, want v2 = 200 ± %.0f", n, got, 3*sigma)
	}
	t.Logf("10%% canary over %d requests: %d to canary", n, got["v2"])

	// Canary down: its rule falls through to stable rather than failing.
	putInstance(t, st, "rel", "r2", 2, hostPort(v2), stopInstance)
	eventually(t, "r2 out", func() bool { return backendsOf(r, "rules.test", "/") == "r1" })
	if got := count("rules.test", 10, "X-Canary", "1"); got["v1"] != 10 {
		t.Fatalf("canary down: %v", got)
	}
}

// BenchmarkProxy measures requests per second through the router to two
// httptest backends over keep-alive connections.
func BenchmarkProxy(b *testing.B) {
	st := newStore(b)
	putApp(b, st, "bench", 1, route("bench.test"))
	be1, be2 := backend(b, "1"), backend(b, "2")
	putInstance(b, st, "bench", "b1", 1, hostPort(be1))
	putInstance(b, st, "bench", "b2", 1, hostPort(be2))
	r := startRouter(b, st, Options{})
	eventually(b, "routes", func() bool { return backendsOf(r, "bench.test", "/") == "b1,b2" })
	loadThroughRouter(b, r, "bench.test")
}
