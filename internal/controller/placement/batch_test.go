package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/scheduler"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// A plan larger than commitBatch is committed in several guarded Txns of
// whole nodes, written side by side: one pass places everything, each
// with its Scheduled event, and each node's placement key moves once.
func TestLargePlanCommitsInBatches(t *testing.T) {
	st := bolttest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 2*commitBatch + 500
	spec := model.AppSpec{Name: "web", Namespace: "default", Image: "x", Driver: "docker",
		Resources: model.Resources{CPU: 1, Memory: 1 << 20}}
	var seed store.Txn
	put := func(key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		seed.Ops = append(seed.Ops, store.Put(key, b))
	}
	for _, name := range []string{"n1", "n2"} {
		put(model.NodeKey(name), model.Node{Name: name, Status: model.NodeReady, Drivers: []string{"docker"},
			Capacity: model.Resources{CPU: 100000, Memory: 100 << 30}, PortRange: model.DefaultPortRange})
	}
	put(model.RevisionKey("default", "web", 1), model.Revision{Namespace: "default", App: "web", Number: 1, Spec: spec})
	for i := 0; i < n; i++ {
		put(model.InstanceKey("default", "web", fmt.Sprintf("web-%05d", i)), model.Instance{ID: fmt.Sprintf("web-%05d", i),
			Namespace: "default", App: "web", Revision: 1, Desired: model.DesiredRun, Resources: spec.Resources,
			Status: model.InstanceStatus{State: model.StatePending}, CreatedAt: time.Unix(int64(i), 0)})
	}
	if _, err := st.Txn(ctx, seed); err != nil {
		t.Fatal(err)
	}
	again, err := New(Options{Store: st, Events: events.NewRecorder(st, nil)}).Reconcile(ctx)
	if err != nil || again {
		t.Fatalf("Reconcile: again=%v err=%v", again, err)
	}
	insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, in := range insts {
		perNode[in.Node]++
	}
	if perNode[""] != 0 || perNode["n1"]+perNode["n2"] != n {
		t.Fatalf("placed per node %v, want all %d placed", perNode, n)
	}
	evs, _, err := events.List(ctx, st, events.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	scheduled := 0
	for _, e := range evs {
		if e.Reason == "Scheduled" {
			scheduled++
		}
	}
	if scheduled != n {
		t.Fatalf("%d Scheduled events, want %d", scheduled, n)
	}
	for _, name := range []string{"n1", "n2"} {
		kv, err := st.Get(ctx, model.PlacementKey(name))
		if err != nil {
			t.Fatal(err)
		}
		if v := string(kv.Value); v != "1" {
			t.Errorf("placement key of %s = %s, want 1 (one bump per pass)", name, v)
		}
	}
}

// Batches hold whole nodes, in the plan's order, closing at the size.
func TestBatchByNode(t *testing.T) {
	var ps []scheduler.Placement
	for i, n := range []string{"a", "b", "a", "c", "b", "a", "d"} {
		ps = append(ps, scheduler.Placement{InstanceID: fmt.Sprint(i), Node: n})
	}
	var got []string
	for _, b := range batchByNode(ps, 3) {
		s := ""
		for _, p := range b {
			s += p.Node + p.InstanceID
		}
		got = append(got, s)
	}
	want := []string{"a0a2a5", "b1b4c3", "d6"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
}
