package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	insts := createdInOnePass(t, st, app(1, n, false))
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

// overlapStore counts how many instance-creating Txns are in flight at
// once; each takes a little while, as a commit does.
type overlapStore struct {
	store.Store
	inFlight, most atomic.Int32
}

func (s *overlapStore) Txn(ctx context.Context, t store.Txn) (int64, error) {
	if len(t.Ops) > 0 && strings.HasPrefix(t.Ops[0].Key, model.PrefixInstances) {
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s.Store.Txn(ctx, t)
}

// One pass reconciles apps side by side: after a burst of applies their
// instances are written by Txns in flight together (which the store
// commits together), not one app's commit after another's.
func TestAppsOfOnePassWriteTogether(t *testing.T) {
	st := &overlapStore{Store: bolttest.Open(t)}
	const apps = 20
	var specs []*model.App
	for i := 0; i < apps; i++ {
		a := app(1, 2, false)
		a.Name = fmt.Sprintf("web%02d", i)
		specs = append(specs, a)
	}
	insts := createdInOnePass(t, st, specs...)
	if len(insts) != 2*apps {
		t.Fatalf("%d instances, want %d", len(insts), 2*apps)
	}
	if most := st.most.Load(); most < 2 {
		t.Fatalf("at most %d app writes in flight at once, want several", most)
	}
}

// createdInOnePass stores apps, runs one deployment pass and returns the
// instances it created.
func createdInOnePass(t *testing.T, st store.Store, apps ...*model.App) []model.Instance {
	t.Helper()
	ctx := context.Background()
	var tx store.Txn
	for _, a := range apps {
		b, _ := json.Marshal(a)
		tx.Ops = append(tx.Ops, store.Put(model.AppKey(a.Namespace, a.Name), b))
	}
	if _, err := st.Txn(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Store: st, Events: events.NewRecorder(st, nil)}).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	return insts
}
