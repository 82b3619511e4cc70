package deployment

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/apps"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// TestControllerStoresRolloutAndRollsBack runs the controller against
// bolt: a crash-looping revision is rolled back by itself (app, rollout
// and events), and an undo request is carried out and consumed.
func TestControllerStoresRolloutAndRollsBack(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	svc := &apps.Service{Store: st}
	two := 2
	spec := model.AppSpec{Name: "web", Image: "x", Instances: &two}
	if _, err := svc.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	now := t0
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Now: func() time.Time { return now }})
	// pass reconciles, then lets the "agent" bring instances up (or crash).
	pass := func(crash int64) {
		t.Helper()
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		objs, _, err := store.ListJSON[model.Instance](ctx, st, model.PrefixInstances)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			in := o.Value
			switch {
			case !in.Active():
				in.Status.State = model.StateStopped
			case in.Revision == crash:
				in.Node, in.Status.State, in.Status.Failures = "n1", model.StateFailed, in.Status.Failures+1
			default:
				in.Node, in.Status.State = "n1", model.StateRunning
			}
			if _, err := store.PutJSON(ctx, st, in.Key(), in, o.ModRev); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Second)
	}
	putNode := func() {
		if _, err := store.PutJSON(ctx, st, model.NodeKey("n1"), model.Node{Name: "n1", Status: model.NodeReady}, 0); err != nil {
			t.Fatal(err)
		}
	}
	putNode()
	for i := 0; i < 3; i++ {
		pass(0)
	}
	spec.Env = map[string]string{"V": "2"}
	if _, err := svc.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		pass(2)
	}
	v, err := svc.Rollout(ctx, "default", "web")
	if err != nil || v.Rollout == nil || v.Rollout.State != model.RolloutRolledBack || v.Revision != 1 {
		t.Fatalf("after crash loop: %+v %v", v.Rollout, err)
	}
	evs, err := store.ListValues[model.Event](ctx, st, model.PrefixEvents)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Reason == "RolloutRolledBack" && strings.Contains(e.Message, "crash loop") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no RolloutRolledBack event naming the crash loop in %+v", evs)
	}
	// Undo back to revision 2 is a request the controller consumes.
	if _, err := svc.RequestRollout(ctx, "default", "web", model.RolloutRequest{Action: model.ActionUndo, ToRevision: 2}); err != nil {
		t.Fatal(err)
	}
	pass(0)
	v, _ = svc.Rollout(ctx, "default", "web")
	if v.Pending != nil || v.Revision != 2 || v.Rollout.RevertTo != 2 {
		t.Fatalf("after undo: %+v pending %+v", v.Rollout, v.Pending)
	}
	app, _ := svc.Get(ctx, "default", "web")
	if app.Spec.Env["V"] != "2" || app.LatestRevision != 2 {
		t.Fatalf("app after undo: rev %d env %v", app.LatestRevision, app.Spec.Env)
	}
}
