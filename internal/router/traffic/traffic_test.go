package traffic

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

// fixed returns the same draw every time.
type fixed int

func (f fixed) IntN(n int) int { return int(f) % n }

func mustCompile(t *testing.T, tr *model.Traffic, current int64) Policy {
	t.Helper()
	p, err := Compile(tr, current)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func req(src string, hdr ...string) RequestInfo {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	ri := RequestInfo{Header: h}
	if src != "" {
		ri.Source = netip.MustParseAddr(src)
	}
	return ri
}

func TestPick(t *testing.T) {
	canary := &model.Traffic{Canary: 4, Stable: 3, Rules: []model.TrafficRule{
		{Header: &model.ValueMatch{Name: "X-Canary", Value: "1"}, Target: model.RefCanary},
		{Header: &model.ValueMatch{Name: "User-Agent", Regex: `(?i)beta-tester`}, Target: model.RefCanary},
		{Cookie: &model.ValueMatch{Name: "track", Value: "canary"}, Target: model.RefCanary},
		{Cookie: &model.ValueMatch{Name: "pin2"}, Target: "2"},
		{SourceCIDRs: []string{"10.1.0.0/16", "fd00::/8"}, Target: model.RefCanary},
		{SourceCIDRs: []string{"192.168.0.0/16"}, Header: &model.ValueMatch{Name: "X-Team", Value: "ops"}, Target: "2"},
	}, Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: 10}, {Target: "2", Weight: 5}}}
	all := map[int64]int{2: 1, 3: 2, 4: 1}
	cases := []struct {
		name   string
		tr     *model.Traffic
		req    RequestInfo
		ready  map[int64]int
		draw   int
		rev    int64
		reason string
	}{
		{"no traffic section: any revision", nil, req("1.2.3.4"), all, 0, Any, "any"},
		{"header equals", canary, req("1.2.3.4", "X-Canary", "1"), all, 99, 4, "rules[0]"},
		{"header other value falls through to stable", canary, req("1.2.3.4", "X-Canary", "0"), all, 99, 3, "stable"},
		{"header regex", canary, req("1.2.3.4", "User-Agent", "Mozilla Beta-Tester/1"), all, 99, 4, "rules[1]"},
		{"cookie equals", canary, req("1.2.3.4", "Cookie", "a=b; track=canary"), all, 99, 4, "rules[2]"},
		{"cookie other value", canary, req("1.2.3.4", "Cookie", "track=stable"), all, 99, 3, "stable"},
		{"cookie presence", canary, req("1.2.3.4", "Cookie", "pin2=x"), all, 99, 2, "rules[3]"},
		{"cidr v4", canary, req("10.1.200.3"), all, 99, 4, "rules[4]"},
		{"cidr v4 outside", canary, req("10.2.0.1"), all, 99, 3, "stable"},
		{"cidr v6", canary, req("fd00::5"), all, 99, 4, "rules[4]"},
		{"cidr v4-mapped v6", canary, req("::ffff:10.1.0.9"), all, 99, 4, "rules[4]"},
		{"all conditions must hold", canary, req("192.168.1.1"), all, 99, 3, "stable"},
		{"cidr and header", canary, req("192.168.1.1", "X-Team", "ops"), all, 99, 2, "rules[5]"},
		{"first match wins", canary, req("192.168.1.1", "X-Team", "ops", "Cookie", "pin2=1"), all, 99, 2, "rules[3]"},
		{"matching rule without ready target falls through", canary, req("1.2.3.4", "X-Canary", "1"), map[int64]int{3: 1}, 99, 3, "stable"},
		{"weight first band", canary, req("1.2.3.4"), all, 0, 4, "weights[0]"},
		{"weight first band end", canary, req("1.2.3.4"), all, 9, 4, "weights[0]"},
		{"weight second band", canary, req("1.2.3.4"), all, 10, 2, "weights[1]"},
		{"weight second band end", canary, req("1.2.3.4"), all, 14, 2, "weights[1]"},
		{"beyond weights: stable", canary, req("1.2.3.4"), all, 15, 3, "stable"},
		{"weight target down: stable", canary, req("1.2.3.4"), map[int64]int{3: 1}, 0, 3, "stable"},
		{"stable down: any", canary, req("1.2.3.4"), map[int64]int{4: 1}, 50, Any, "any: stable has no ready instance"},
		{"stable defaults to current", &model.Traffic{}, req("1.2.3.4"), all, 0, 2, "stable"},
		{"unknown source never matches cidr", canary, req(""), all, 99, 3, "stable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustCompile(t, c.tr, 2)
			if c.tr == canary {
				p = mustCompile(t, c.tr, 9)
			}
			d := Pick(c.req, &p, c.ready, fixed(c.draw))
			if d.Revision != c.rev || d.Reason != c.reason {
				t.Fatalf("got %+v, want revision %d reason %q", d, c.rev, c.reason)
			}
		})
	}
}

// TestWeightDistribution: 10% over 2,000 requests with a seeded source
// lands within 3 standard deviations of 200 (sigma = sqrt(n p (1-p)) =
// 13.4, so 160..240), for several seeds.
func TestWeightDistribution(t *testing.T) {
	p := mustCompile(t, &model.Traffic{Canary: 2, Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: 10}}}, 1)
	ready := map[int64]int{1: 3, 2: 1}
	const n = 2000
	sigma := math.Sqrt(n * 0.1 * 0.9)
	for seed := uint64(1); seed <= 5; seed++ {
		rnd := rand.New(rand.NewPCG(seed, seed*7))
		got := 0
		for i := 0; i < n; i++ {
			if Pick(RequestInfo{}, &p, ready, rnd).Revision == 2 {
				got++
			}
		}
		if math.Abs(float64(got)-n*0.1) > 3*sigma {
			t.Fatalf("seed %d: %d of %d went to canary, want 200 ± %.0f", seed, got, n, 3*sigma)
		}
	}
}

func TestWeightEdges(t *testing.T) {
	ready := map[int64]int{1: 1, 2: 1}
	for _, c := range []struct{ weight, want int }{{0, 0}, {100, 100}} {
		p := mustCompile(t, &model.Traffic{Canary: 2, Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: c.weight}}}, 1)
		got := 0
		for draw := 0; draw < 100; draw++ {
			if Pick(RequestInfo{}, &p, ready, fixed(draw)).Revision == 2 {
				got++
			}
		}
		if got != c.want {
			t.Fatalf("weight %d: %d of 100 draws to canary", c.weight, got)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		tr   *model.Traffic
		want string
	}{
		{&model.Traffic{Rules: []model.TrafficRule{{Target: model.RefCanary, SourceCIDRs: []string{"10.0.0.0/8"}}}}, "rules[0].target: names canary"},
		{&model.Traffic{Rules: []model.TrafficRule{{Target: "x"}}}, "rules[0].target"},
		{&model.Traffic{Rules: []model.TrafficRule{{Target: "1", SourceCIDRs: []string{"10.0.0.0/33"}}}}, "rules[0].sourceCIDRs[0]"},
		{&model.Traffic{Rules: []model.TrafficRule{{Target: "1", Header: &model.ValueMatch{Name: "a", Regex: "("}}}}, "rules[0].header.regex"},
		{&model.Traffic{Weights: []model.TrafficWeight{{Target: "nope", Weight: 1}}}, "weights[0].target"},
	}
	for _, c := range cases {
		if _, err := Compile(c.tr, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compile(%+v) = %v, want error containing %q", c.tr, err, c.want)
		}
	}
}
