package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

func TestSpreadAcrossAttribute(t *testing.T) {
	// Zone a has 3 nodes, b has 1: node spread alone would put 3 of 4 in a.
	snap := Snapshot{Nodes: append(zoned("a", "a", 3), zoned("b", "b", 1)...)}
	plan := Schedule(snap, asks("i", "web", 4, func(a *Ask) { a.Spread = &model.Spread{Field: "zone"} }))
	if got := perValue(t, snap, plan, "zone"); !reflect.DeepEqual(got, map[string]int{"a": 2, "b": 2}) {
		t.Fatalf("per zone %v", got)
	}
	// Within a zone, the strategy still spreads across nodes.
	if got := placedOn(plan); got["i0"] == got["i2"] {
		t.Fatalf("two instances on one node of zone a: %v", got)
	}
}

func TestSpreadIsAPreference(t *testing.T) {
	snap := Snapshot{Nodes: append(zoned("a", "a", 1), zoned("b", "b", 1, func(n *model.Node) { n.Capacity.CPU = 100 })...)}
	plan := Schedule(snap, asks("i", "web", 3, func(a *Ask) { a.Spread = &model.Spread{Field: "zone"} }))
	if len(plan.Failures) != 0 {
		t.Fatalf("full zone blocked placement: %v", plan.Failures)
	}
	if got := perValue(t, snap, plan, "zone"); !reflect.DeepEqual(got, map[string]int{"a": 2, "b": 1}) {
		t.Fatalf("per zone %v", got)
	}
}

func TestAffinity(t *testing.T) {
	nodes := append(zoned("a", "a", 2), zoned("b", "b", 2)...)
	db := []model.Instance{running("db0", "b1", "db", 0, 0, nil)}
	aff := func(af ...model.Affinity) func(*Ask) { return func(a *Ask) { a.Affinity = af } }
	cases := []struct {
		name  string
		insts []model.Instance
		asks  []Ask
		place map[string]string
		fail  map[string]string
	}{
		{name: "required affinity by hostname", insts: db,
			asks:  asks("i", "web", 2, aff(model.Affinity{App: "db", Required: true})),
			place: map[string]string{"i0": "b1", "i1": "b1"}},
		{name: "required affinity with no target refuses", asks: asks("i", "web", 1, aff(model.Affinity{App: "db", Required: true})),
			fail: map[string]string{"i0": "0/4 nodes fit: 4 affinity: no db on this node"}},
		{name: "preferred affinity by zone", insts: db,
			asks:  asks("i", "web", 2, aff(model.Affinity{App: "db", Field: "zone"})),
			place: map[string]string{"i0": "b0", "i1": "b1"}},
		{name: "preferred affinity falls back when the zone is full", insts: append(db, running("big0", "b0", "x", 4000, 0, nil), running("big1", "b1", "x", 4000, 0, nil)),
			asks:  []Ask{ask("i0", "web", 4000, 0, aff(model.Affinity{App: "db", Field: "zone"}))},
			place: map[string]string{"i0": "a0"}},
		{name: "required anti-affinity by zone", insts: db,
			asks:  asks("i", "web", 1, aff(model.Affinity{App: "db", Field: "zone", Anti: true, Required: true})),
			place: map[string]string{"i0": "a0"}},
		{name: "required anti-affinity to itself is one per node", asks: asks("i", "web", 5, aff(model.Affinity{App: "web", Anti: true, Required: true})),
			place: map[string]string{"i0": "a0", "i1": "a1", "i2": "b0", "i3": "b1"},
			fail:  map[string]string{"i4": "0/4 nodes fit: 4 anti-affinity: web already on this node"}},
		{name: "required self affinity starts anywhere, then follows", asks: asks("i", "web", 2, aff(model.Affinity{App: "web", Field: "zone", Required: true})),
			place: map[string]string{"i0": "a0", "i1": "a1"}},
		{name: "preferred anti-affinity", insts: []model.Instance{running("db0", "a0", "db", 0, 0, nil)},
			asks:  []Ask{ask("i0", "web", 0, 0, aff(model.Affinity{App: "db", Anti: true}))},
			place: map[string]string{"i0": "a1"}},
		{name: "affinity in another namespace", insts: []model.Instance{func() model.Instance {
			in := running("db0", "a1", "db", 0, 0, nil)
			in.Namespace = "data"
			return in
		}()},
			asks:  asks("i", "web", 1, aff(model.Affinity{App: "db", Namespace: "data", Required: true})),
			place: map[string]string{"i0": "a1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Schedule(Snapshot{Nodes: nodes, Instances: tc.insts}, tc.asks)
			if tc.place == nil {
				tc.place = map[string]string{}
			}
			if tc.fail == nil {
				tc.fail = map[string]string{}
			}
			if got := placedOn(plan); !reflect.DeepEqual(got, tc.place) {
				t.Errorf("placements %v, want %v", got, tc.place)
			}
			if got := failures(plan); !reflect.DeepEqual(got, tc.fail) {
				t.Errorf("failures %q, want %q", got, tc.fail)
			}
		})
	}
}

func TestGPUs(t *testing.T) {
	gpus := func(n int) func(*model.Node) { return func(nd *model.Node) { nd.Capacity.GPUs = n } }
	devices := func(idx ...int) func(*model.Node) {
		return func(nd *model.Node) {
			for _, i := range idx {
				nd.GPUs = append(nd.GPUs, model.GPU{Index: i, Name: "fake"})
			}
			nd.Capacity.GPUs = len(idx)
		}
	}
	withGPUs := func(n int) func(*Ask) { return func(a *Ask) { a.Resources.GPUs = n } }
	holding := func(id, nodeName string, idx ...int) model.Instance {
		in := running(id, nodeName, "x", 0, 0, nil)
		in.Resources.GPUs, in.GPUs = len(idx), idx
		return in
	}
	snap := Snapshot{Nodes: []model.Node{node("cpu", 4000, 4*gi), node("g1", 4000, 4*gi, devices(0, 1, 2, 3)), node("g2", 4000, 4*gi, gpus(2))},
		Instances: []model.Instance{holding("x", "g1", 1)}}
	plan := Schedule(snap, []Ask{
		ask("a", "train", 0, 0, withGPUs(2)),
		ask("b", "train", 0, 0, withGPUs(1)),
		ask("c", "train", 0, 0, withGPUs(2)),
		ask("d", "train", 0, 0, withGPUs(3)),
		ask("e", "web", 0, 0),
	})
	got := map[string][]int{}
	nodes := map[string]string{}
	for _, p := range plan.Placements {
		got[p.InstanceID] = p.GPUs
		nodes[p.InstanceID] = p.Node
	}
	// a takes g1's lowest free devices (1 is held); b goes to g2 (spread:
	// g1 already runs train); c then finds one free device per node.
	want := map[string][]int{"a": {0, 2}, "b": {0}, "e": nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("gpus %v (nodes %v), want %v", got, nodes, want)
	}
	if nodes["a"] != "g1" || nodes["b"] != "g2" || nodes["e"] != "cpu" {
		t.Fatalf("nodes %v", nodes)
	}
	wantFail := map[string]string{"c": "0/3 nodes fit: 2 insufficient gpus (need 2, free 1), 1 no gpus",
		"d": "0/3 nodes fit: 1 insufficient gpus (need 3, free 1), 1 no gpus, 1 too few gpus (need 3, has 2)"}
	if r := failures(plan); !reflect.DeepEqual(r, wantFail) {
		t.Fatalf("failures %q, want %q", r, wantFail)
	}
}

// TestSampledScanStillSpreads: on a cluster large enough for sampling,
// spread still puts one instance per node before doubling up.
func TestSampledScanStillSpreads(t *testing.T) {
	var nodes []model.Node
	for i := 0; i < 300; i++ {
		nodes = append(nodes, node(fmt.Sprintf("n%03d", i), 4000, 4*gi))
	}
	plan := Schedule(Snapshot{Nodes: nodes}, asks("i", "web", 300))
	per := map[string]int{}
	for _, p := range plan.Placements {
		per[p.Node]++
	}
	if len(plan.Placements) != 300 || len(per) != 300 {
		t.Fatalf("%d placements on %d nodes, want 300 on 300", len(plan.Placements), len(per))
	}
}

// TestGroupedScanOnLargeCluster: zones in contiguous name ranges, so a
// window of nodes in name order would see one zone only; GROUP_BY must
// still balance, and spread across nodes within each zone.
func TestGroupedScanOnLargeCluster(t *testing.T) {
	snap := Snapshot{Nodes: append(append(zoned("a", "a", 150), zoned("b", "b", 150)...), zoned("c", "c", 150)...)}
	plan := Schedule(snap, asks("i", "web", 300, cons(model.Constraint{Field: "zone", Op: model.OpGroupBy})))
	if got := perValue(t, snap, plan, "zone"); !reflect.DeepEqual(got, map[string]int{"a": 100, "b": 100, "c": 100}) {
		t.Fatalf("per zone %v", got)
	}
	per := map[string]int{}
	for _, p := range plan.Placements {
		per[p.Node]++
	}
	if len(per) != 300 {
		t.Fatalf("300 instances on %d nodes, want one per node", len(per))
	}
}
