package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

// zoned builds n ready nodes named <prefix><i> in zone z.
func zoned(prefix, z string, n int, mut ...func(*model.Node)) []model.Node {
	var out []model.Node
	for i := 0; i < n; i++ {
		out = append(out, node(fmt.Sprintf("%s%d", prefix, i), 4000, 4*gi, append([]func(*model.Node){func(n *model.Node) { n.Zone = z }}, mut...)...))
	}
	return out
}

func label(k, v string) func(*model.Node) {
	return func(n *model.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

func cons(cs ...model.Constraint) func(*Ask) { return func(a *Ask) { a.Constraints = cs } }

func asks(prefix, app string, n int, mut ...func(*Ask)) []Ask {
	var out []Ask
	for i := 0; i < n; i++ {
		out = append(out, ask(fmt.Sprintf("%s%d", prefix, i), app, 100, 64*mi, mut...))
	}
	return out
}

// placedOn returns instance → node of a plan.
func placedOn(p Plan) map[string]string {
	out := map[string]string{}
	for _, pl := range p.Placements {
		out[pl.InstanceID] = pl.Node
	}
	return out
}

func failures(p Plan) map[string]string {
	out := map[string]string{}
	for _, f := range p.Failures {
		out[f.InstanceID] = f.Reason
	}
	return out
}

// perValue counts placements per node attribute value.
func perValue(t *testing.T, snap Snapshot, p Plan, field string) map[string]int {
	t.Helper()
	byName := map[string]model.Node{}
	for _, n := range snap.Nodes {
		byName[n.Name] = n
	}
	out := map[string]int{}
	for _, pl := range p.Placements {
		n := byName[pl.Node]
		v, _ := n.Attribute(field)
		out[v]++
	}
	return out
}

func TestMarathonOperators(t *testing.T) {
	three := append(append(zoned("a", "a", 2), zoned("b", "b", 2)...), zoned("c", "c", 1)...)
	cases := []struct {
		name  string
		snap  Snapshot
		asks  []Ask
		place map[string]string
		fail  map[string]string
		// per, when set, is the expected count of placements per zone.
		per map[string]int
	}{
		{name: "UNIQUE hostname: one per node, then refusal",
			snap:  Snapshot{Nodes: zoned("n", "a", 2)},
			asks:  asks("i", "web", 3, cons(model.Constraint{Field: "hostname", Op: model.OpUnique})),
			place: map[string]string{"i0": "n0", "i1": "n1"},
			fail:  map[string]string{"i2": "0/2 nodes fit: 2 UNIQUE hostname already used"}},
		{name: "UNIQUE counts instances already running",
			snap:  Snapshot{Nodes: zoned("n", "a", 2), Instances: []model.Instance{running("x", "n0", "web", 0, 0, nil)}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Field: "hostname", Op: model.OpUnique})),
			place: map[string]string{"i0": "n1"}},
		{name: "UNIQUE zone", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 4, cons(model.Constraint{Field: "zone", Op: model.OpUnique})),
			per:  map[string]int{"a": 1, "b": 1, "c": 1},
			fail: map[string]string{"i3": "0/5 nodes fit: 5 UNIQUE zone already used"}},
		{name: "UNIQUE refuses nodes without the attribute",
			snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)}},
			asks: asks("i", "web", 1, cons(model.Constraint{Field: "rack", Op: model.OpUnique})),
			fail: map[string]string{"i0": "0/1 nodes fit: constraint rack UNIQUE: node has no rack"}},
		{name: "CLUSTER with a value", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 3, cons(model.Constraint{Field: "zone", Op: model.OpCluster, Value: "b"})),
			per:  map[string]int{"b": 3}},
		{name: "CLUSTER without a value follows the first placement", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 4, cons(model.Constraint{Field: "zone", Op: model.OpCluster})),
			per:  map[string]int{"a": 4}},
		{name: "CLUSTER without a value follows running instances", snap: Snapshot{Nodes: three,
			Instances: []model.Instance{running("x", "c0", "web", 0, 0, nil)}},
			asks: asks("i", "web", 2, cons(model.Constraint{Field: "zone", Op: model.OpCluster})),
			per:  map[string]int{"c": 2}},
		{name: "GROUP_BY spreads evenly across zones", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 7, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy})),
			per:  map[string]int{"a": 3, "b": 2, "c": 2}},
		{name: "GROUP_BY balances around existing instances", snap: Snapshot{Nodes: three,
			Instances: []model.Instance{running("x", "a0", "web", 0, 0, nil), running("y", "a1", "web", 0, 0, nil)}},
			asks: asks("i", "web", 2, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy})),
			per:  map[string]int{"b": 1, "c": 1}},
		{name: "GROUP_BY with a group count waits for missing groups", snap: Snapshot{Nodes: zoned("a", "a", 2)},
			asks:  asks("i", "web", 2, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy, Value: "2"})),
			place: map[string]string{"i0": "a0"},
			fail:  map[string]string{"i1": "0/2 nodes fit: 2 GROUP_BY zone: waiting for 2 values, 1 fit"}},
		{name: "GROUP_BY skips a full zone", snap: Snapshot{Nodes: append(zoned("a", "a", 1, func(n *model.Node) { n.Capacity.CPU = 100 }), zoned("b", "b", 1)...),
			Instances: []model.Instance{running("x", "a0", "other", 100, 0, nil)}},
			asks: asks("i", "web", 2, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy})),
			per:  map[string]int{"b": 2}},
		{name: "LIKE on a label, whole value", snap: Snapshot{Nodes: []model.Node{
			node("n1", 1000, gi, label("disk", "ssd")), node("n2", 1000, gi, label("disk", "hdd")),
			node("n3", 1000, gi, label("disk", "nvme")), node("n4", 1000, gi, label("disk", "ssd-old"))}},
			asks: asks("i", "web", 3, cons(model.Constraint{Field: "label:disk", Op: model.OpLike, Value: "ssd|nvme"},
				model.Constraint{Field: "hostname", Op: model.OpUnique})),
			place: map[string]string{"i0": "n1", "i1": "n3"},
			fail: map[string]string{"i2": "0/4 nodes fit: disk=hdd | disk=ssd-old (2 nodes): constraint disk LIKE ssd|nvme not met; " +
				"disk=nvme | disk=ssd (2 nodes): UNIQUE hostname already used"}},
		{name: "UNLIKE accepts nodes without the label", snap: Snapshot{Nodes: []model.Node{
			node("n1", 1000, gi, label("disk", "hdd")), node("n2", 1000, gi)}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Field: "disk", Op: model.OpUnlike, Value: "h.*"})),
			place: map[string]string{"i0": "n2"}},
		{name: "MAX_PER zone", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 7, cons(model.Constraint{Field: "zone", Op: model.OpMaxPer, Value: "2"})),
			per:  map[string]int{"a": 2, "b": 2, "c": 2},
			fail: map[string]string{"i6": "0/5 nodes fit: 5 MAX_PER zone 2 reached"}},
		{name: "IS on an attribute", snap: Snapshot{Nodes: []model.Node{
			node("n1", 1000, gi, func(n *model.Node) { n.Arch = "amd64" }), node("n2", 1000, gi, func(n *model.Node) { n.Arch = "arm64" })}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Field: "arch", Op: model.OpIs, Value: "arm64"})),
			place: map[string]string{"i0": "n2"}},
		{name: "region and zone fall back to berth.* labels", snap: Snapshot{Nodes: []model.Node{
			node("n1", 1000, gi, label("berth.region", "eu")), node("n2", 1000, gi, label("berth.region", "us"))}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Field: "region", Op: model.OpIs, Value: "us"})),
			place: map[string]string{"i0": "n2"}},
		{name: "legacy label form keeps label semantics", snap: Snapshot{Nodes: []model.Node{
			node("n1", 1000, gi, func(n *model.Node) { n.Zone = "a" }), node("n2", 1000, gi, label("zone", "a"))}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Label: "zone", Op: model.OpEquals, Value: "a"})),
			place: map[string]string{"i0": "n2"}},
		{name: "operators combine: GROUP_BY zone and UNIQUE hostname", snap: Snapshot{Nodes: three},
			asks: asks("i", "web", 6, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy}, model.Constraint{Field: "hostname", Op: model.OpUnique})),
			per:  map[string]int{"a": 2, "b": 2, "c": 1},
			fail: map[string]string{"i5": "0/5 nodes fit: 5 UNIQUE hostname already used"}},
		{name: "other apps do not count", snap: Snapshot{Nodes: zoned("n", "a", 1),
			Instances: []model.Instance{running("x", "n0", "db", 0, 0, nil)}},
			asks:  asks("i", "web", 1, cons(model.Constraint{Field: "hostname", Op: model.OpUnique})),
			place: map[string]string{"i0": "n0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Schedule(tc.snap, tc.asks)
			if tc.place != nil && !reflect.DeepEqual(placedOn(plan), tc.place) {
				t.Errorf("placements %v, want %v", placedOn(plan), tc.place)
			}
			if tc.per != nil {
				if got := perValue(t, tc.snap, plan, "zone"); !reflect.DeepEqual(got, tc.per) {
					t.Errorf("per zone %v, want %v", got, tc.per)
				}
			}
			if tc.fail == nil {
				tc.fail = map[string]string{}
			}
			if got := failures(plan); !reflect.DeepEqual(got, tc.fail) {
				t.Errorf("failures:\n got %q\nwant %q", got, tc.fail)
			}
		})
	}
}

func TestRefusalsGroupNodesByClass(t *testing.T) {
	nodes := append(append(zoned("a", "a", 2, func(n *model.Node) { n.Capacity.CPU = 100 }), zoned("b", "b", 3)...),
		node("c0", 4000, gi, func(n *model.Node) { n.Zone = "c"; n.Status = model.NodeDown }))
	snap := Snapshot{Nodes: nodes, Instances: []model.Instance{
		running("x", "b0", "web", 0, 0, nil), running("y", "b1", "web", 0, 0, nil), running("z", "b2", "web", 0, 0, nil)}}
	plan := Schedule(snap, asks("i", "web", 1, func(a *Ask) {
		a.Resources.CPU = 500
		a.Constraints = []model.Constraint{{Field: "hostname", Op: model.OpUnique}}
	}))
	want := "0/6 nodes fit: zone=b (3 nodes): UNIQUE hostname already used; " +
		"zone=a (2 nodes): insufficient cpu (need 0.5, free 0.1); zone=c (1 node): node down"
	if got := failures(plan)["i0"]; got != want {
		t.Fatalf("reason\n got %q\nwant %q", got, want)
	}
}

func TestPinnedAsk(t *testing.T) {
	snap := Snapshot{Nodes: []model.Node{node("n1", 1000, gi), node("n2", 100, gi)}}
	plan := Schedule(snap, []Ask{
		ask("i1", "agent", 500, 0, func(a *Ask) { a.Node = "n1" }),
		ask("i2", "agent", 500, 0, func(a *Ask) { a.Node = "n2" }),
		ask("i3", "agent", 500, 0, func(a *Ask) { a.Node = "gone" }),
	})
	if got := placedOn(plan); !reflect.DeepEqual(got, map[string]string{"i1": "n1"}) {
		t.Fatalf("placements %v", got)
	}
	want := map[string]string{"i2": "0/1 nodes fit: insufficient cpu (need 0.5, free 0.1)",
		"i3": "0/1 nodes fit: node gone is not registered"}
	if got := failures(plan); !reflect.DeepEqual(got, want) {
		t.Fatalf("failures %q", got)
	}
}

func TestMatchesNode(t *testing.T) {
	n := node("n1", 1000, gi, label("disk", "ssd"), func(n *model.Node) { n.Status = model.NodeDown })
	if r := MatchesNode(&n, &Ask{Driver: "docker", Constraints: []model.Constraint{{Field: "disk", Op: model.OpLike, Value: "s.d"}}}); r != "" {
		t.Fatalf("down node with the label: %q, want a match (readiness is not its business)", r)
	}
	if r := MatchesNode(&n, &Ask{Driver: "docker", Constraints: []model.Constraint{{Field: "disk", Op: model.OpIs, Value: "hdd"}}}); !strings.Contains(r, "constraint disk IS hdd not met") {
		t.Fatalf("got %q", r)
	}
}

// TestRefusalsIgnoreNoisyLabels: a label that differs on every node does
// not clutter the refusal when zone tells the groups apart.
func TestRefusalsIgnoreNoisyLabels(t *testing.T) {
	var nodes []model.Node
	for i, z := range []string{"a", "a", "b", "b", "b"} {
		nodes = append(nodes, node(fmt.Sprintf("n%d", i), 1000, gi, label("serial", fmt.Sprint(1000+i)), func(n *model.Node) {
			n.Zone = z
			if z == "a" {
				n.Capacity.CPU = 100
			}
		}))
	}
	plan := Schedule(Snapshot{Nodes: nodes}, []Ask{ask("i0", "web", 500, 0, cons(model.Constraint{Field: "zone", Op: model.OpIs, Value: "a"}))})
	want := "0/5 nodes fit: zone=b (3 nodes): constraint zone IS a not met; zone=a (2 nodes): insufficient cpu (need 0.5, free 0.1)"
	if got := failures(plan)["i0"]; got != want {
		t.Fatalf("reason\n got %q\nwant %q", got, want)
	}
}
