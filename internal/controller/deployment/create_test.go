package deployment

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// Scaling an app from zero to more than createBatch instances creates
// them all in one pass, in batches, each instance with its Created event,
// all pending and unplaced.
func TestCreateInBatches(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	const n = 2*createBatch + 7
	b, _ := json.Marshal(app(1, n, false))
	if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(model.AppKey("default", "web"), b)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Store: st, Events: events.NewRecorder(st, nil)}).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, in := range insts {
		if in.App != "web" || in.Revision != 1 || in.Node != "" || in.Status.State != model.StatePending || in.CreatedAt.IsZero() {
			t.Fatalf("created %+v", in)
		}
		ids[in.ID] = true
	}
	if len(insts) != n || len(ids) != n {
		t.Fatalf("%d instances (%d distinct IDs), want %d", len(insts), len(ids), n)
	}
	evs, _, err := events.List(ctx, st, events.Filter{App: "web"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, e := range evs {
		if e.Reason == "Created" && ids[e.Instance] {
			created++
		}
	}
	if created != n {
		t.Fatalf("%d Created events, want %d", created, n)
	}
}
