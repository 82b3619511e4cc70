package deployment

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// TestSystemAppFollowsNodes runs the controller against a bolt store: a
// system app gets one pinned instance per matching node, and one more
// when a node joins.
func TestSystemAppFollowsNodes(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(key, b)}}); err != nil {
			t.Fatal(err)
		}
	}
	edge := map[string]string{"role": "edge"}
	put(model.NodeKey("n1"), sysNode("n1", func(n *model.Node) { n.Labels = edge }))
	put(model.NodeKey("n2"), sysNode("n2"))
	app := *systemApp(1, func(s *model.AppSpec) {
		s.Name, s.Namespace, s.Image = "agent", "default", "x"
		s.Constraints = []model.Constraint{{Field: "role", Op: model.OpIs, Value: "edge"}}
	})
	put(model.AppKey("default", "agent"), app)
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil)})
	targets := func() []string {
		t.Helper()
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range insts {
			if in.Active() {
				out = append(out, in.TargetNode)
			}
		}
		sort.Strings(out)
		return out
	}
	if got := targets(); len(got) != 1 || got[0] != "n1" {
		t.Fatalf("instances pinned to %v, want [n1]", got)
	}
	put(model.NodeKey("n3"), sysNode("n3", func(n *model.Node) { n.Labels = edge }))
	if got := targets(); len(got) != 2 || got[0] != "n1" || got[1] != "n3" {
		t.Fatalf("after n3 joined: %v, want [n1 n3]", got)
	}
	if got := targets(); len(got) != 2 {
		t.Fatalf("a further pass changed the count: %v", got)
	}
}

// TestBatchAppRecordsOutcomes: the controller starts a batch instance,
// records its success once the agent reports exit 0, stops it, and the
// job is complete.
func TestBatchAppRecordsOutcomes(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	b, _ := json.Marshal(sysNode("n1"))
	a := *batchApp(1, 1, 1, 0)
	a.Spec.Name, a.Spec.Namespace, a.Spec.Image = "job", "default", "x"
	ab, _ := json.Marshal(a)
	if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(model.NodeKey("n1"), b), store.Put(model.AppKey("default", "job"), ab)}}); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil)})
	list := func() []model.Instance {
		t.Helper()
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
		if err != nil {
			t.Fatal(err)
		}
		return insts
	}
	insts := list()
	if len(insts) != 1 {
		t.Fatalf("%d instances, want 1", len(insts))
	}
	// What the placement loop and the agent write when it exits 0 under
	// restart policy never.
	if _, err := store.Update(ctx, st, insts[0].Key(), func(in *model.Instance) error {
		in.Node, in.Status.State, in.Status.Message = "n1", model.StateStopped, "exited with code 0"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	insts = list()
	if len(insts) != 1 || insts[0].Outcome != model.OutcomeSucceeded || insts[0].Desired != model.DesiredStop {
		t.Fatalf("after success: %+v", insts)
	}
	insts = list() // nothing more to do: the record stays, nothing is created
	if len(insts) != 1 {
		t.Fatalf("%d instances after completion", len(insts))
	}
	evs, _, err := events.List(ctx, st, events.Filter{App: "job"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	complete := 0
	for _, e := range evs {
		if e.Reason == "JobComplete" {
			complete++
		}
	}
	if complete != 1 {
		t.Fatalf("%d JobComplete events, want 1", complete)
	}
	st2 := model.AppStatus{}
	model.TypeStatus(&a, insts, &st2)
	if !st2.Converged || st2.Job.Succeeded != 1 {
		t.Fatalf("status %+v", st2)
	}
}
