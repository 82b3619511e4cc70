package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// slowTxn makes each instance write take a while, as a busy server does,
// so that the status changes of instances starting together queue up.
type slowTxn struct{ *counting }

func (s slowTxn) Txn(ctx context.Context, t store.Txn) (int64, error) {
	time.Sleep(30 * time.Millisecond)
	return s.counting.Txn(ctx, t)
}

// TestInstancesStartingTogetherShareWrites: twenty instances of one node
// starting at once reach running in a few Txns, not twenty, with no
// read, no conflict and every Started event.
func TestInstancesStartingTogetherShareWrites(t *testing.T) {
	e := newEnv(t)
	s := &counting{Store: e.store, prefix: model.PrefixInstances}
	var ins []model.Instance
	for i := 0; i < 20; i++ {
		ins = append(ins, e.place(fmt.Sprintf("web-%02d", i), []string{"run"}, nil))
	}
	defer e.runAgentOn(slowTxn{s})()
	e.eventually("all running", func() bool {
		for _, in := range ins {
			if e.instance(in).Status.State != model.StateRunning {
				return false
			}
		}
		return true
	})
	gets, txns, conflicts := s.calls()
	if gets != 0 || conflicts != 0 || txns > 5 {
		t.Fatalf("20 starts: %d reads, %d writes, %d conflicts; want no reads or conflicts and at most 5 writes", gets, txns, conflicts)
	}
	if got := strings.Count(e.eventReasons(), "Started"); got != len(ins) {
		t.Fatalf("%d Started events, want %d", got, len(ins))
	}
}

// TestBatchFallsBackOneByOne: a batch with one instance changed since
// its runner saw it fails as a whole; each change is then written on its
// own, the stale one after a read, and none is lost.
func TestBatchFallsBackOneByOne(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	var known []store.Object[model.Instance]
	for i := 0; i < 3; i++ {
		in := model.Instance{ID: fmt.Sprintf("i%d", i), Namespace: "default", App: "web", Node: "n1", Desired: model.DesiredRun}
		rev, err := store.PutJSON(ctx, st, in.Key(), in, 0)
		if err != nil {
			t.Fatal(err)
		}
		known = append(known, store.Object[model.Instance]{Value: in, ModRev: rev})
	}
	stale := known[1].Value
	stale.Desired = model.DesiredStop // the deployment controller, meanwhile
	if _, err := store.PutJSON(ctx, st, stale.Key(), stale, known[1].ModRev); err != nil {
		t.Fatal(err)
	}
	w := &statusWriter{st: st}
	batch := make([]*statusReq, len(known))
	for i := range known {
		batch[i] = &statusReq{ctx: ctx, key: known[i].Value.Key(), known: known[i], done: make(chan statusRes, 1),
			mutate: func(in *model.Instance) error { in.Status.State = model.StateRunning; return nil }}
	}
	w.write(ctx, batch)
	for i, r := range batch {
		res := <-r.done
		if res.err != nil {
			t.Fatalf("instance %d: %v", i, res.err)
		}
		got, err := store.GetJSON[model.Instance](ctx, st, r.key)
		if err != nil || got.Value.Status.State != model.StateRunning || got.ModRev != res.obj.ModRev {
			t.Fatalf("instance %d stored %+v at %d (%v), writer says %d", i, got.Value.Status, got.ModRev, err, res.obj.ModRev)
		}
		if i == 1 && got.Value.Desired != model.DesiredStop {
			t.Fatal("the fallback lost the other writer's change")
		}
	}
}
