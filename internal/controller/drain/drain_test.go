package drain

import (
	"context"
	"testing"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

func TestDrainStopsOneAtATimeUntilReplacementsAreReady(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	put := func(key string, v any) {
		t.Helper()
		kv, err := st.Get(ctx, key)
		if err != nil {
			kv.ModRev = 0
		}
		if _, err := store.PutJSON(ctx, st, key, v, kv.ModRev); err != nil {
			t.Fatal(err)
		}
	}
	two := 2
	put(model.AppKey("default", "web"), model.App{Namespace: "default", Name: "web", Revision: 1, Spec: model.AppSpec{Instances: &two}})
	put(model.NodeKey("n1"), model.Node{Name: "n1", Status: model.NodeReady, Cordoned: true, Draining: true})
	put(model.NodeKey("n2"), model.Node{Name: "n2", Status: model.NodeReady})
	inst := func(id, node, desired, state string) model.Instance {
		in := model.Instance{ID: id, Namespace: "default", App: "web", Revision: 1, Node: node, Desired: desired,
			Status: model.InstanceStatus{State: state}}
		put(in.Key(), in)
		return in
	}
	inst("a", "n1", model.DesiredRun, model.StateRunning)
	inst("b", "n1", model.DesiredRun, model.StateRunning)
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil)})
	stopped := func() []string {
		list, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range list {
			if in.Node == "n1" && !in.Active() {
				out = append(out, in.ID)
			}
		}
		return out
	}
	reconcile := func() {
		t.Helper()
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reconcile()
	reconcile()
	if got := stopped(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after the first passes stopped %v, want [a]", got)
	}
	// a stopped; its replacement exists but is not running yet: wait.
	inst("a", "n1", model.DesiredStop, model.StateStopped)
	inst("c", "n2", model.DesiredRun, model.StateStarting)
	reconcile()
	if got := stopped(); len(got) != 1 {
		t.Fatalf("stopped %v before the replacement was ready", got)
	}
	inst("c", "n2", model.DesiredRun, model.StateRunning)
	reconcile()
	if got := stopped(); len(got) != 2 {
		t.Fatalf("stopped %v once the replacement was ready, want a and b", got)
	}
	// Everything is off the node: the drain ends, the node stays cordoned.
	for _, id := range []string{"a", "b"} {
		if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(model.InstanceKey("default", "web", id))}}); err != nil {
			t.Fatal(err)
		}
	}
	reconcile()
	n, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Value.Draining || !n.Value.Cordoned {
		t.Fatalf("after the drain: draining=%v cordoned=%v, want false/true", n.Value.Draining, n.Value.Cordoned)
	}
}
