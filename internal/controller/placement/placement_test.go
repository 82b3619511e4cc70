package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// seed stores one ready node that fits 5 instances of web and 20 pending
// instances of it.
func seed(t *testing.T) *bolt.Store {
	t.Helper()
	st := bolttest.Open(t)
	node := model.Node{Name: "n1", Status: model.NodeReady, Drivers: []string{"docker"},
		Capacity: model.Resources{CPU: 1000, Memory: 5 << 30}, PortRange: model.DefaultPortRange}
	mustPut(t, st, model.NodeKey("n1"), node)
	spec := model.AppSpec{Name: "web", Namespace: "default", Image: "x", Driver: "docker",
		Resources: model.Resources{CPU: 200, Memory: 1 << 30}, Ports: []model.PortSpec{{Name: "http", ContainerPort: 80, Protocol: "tcp"}}}
	mustPut(t, st, model.RevisionKey("default", "web", 1), model.Revision{Namespace: "default", App: "web", Number: 1, Spec: spec})
	for i := 0; i < 20; i++ {
		in := model.Instance{ID: fmt.Sprintf("web-%02d", i), Namespace: "default", App: "web", Revision: 1,
			Desired: model.DesiredRun, Resources: spec.Resources, Status: model.InstanceStatus{State: model.StatePending},
			CreatedAt: time.Unix(int64(i), 0)}
		mustPut(t, st, in.Key(), in)
	}
	return st
}

// gatedStore holds its first Txn until gate is closed, so a plan computed
// from a snapshot can be made stale on purpose.
type gatedStore struct {
	store.Store
	gate    chan struct{}
	reached chan struct{}
	once    sync.Once
}

func (g *gatedStore) Txn(ctx context.Context, t store.Txn) (int64, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.reached)
		<-g.gate
	}
	return g.Store.Txn(ctx, t)
}

// TestStalePlanNeverOvercommits: planner A snapshots, another planner
// fills the node, then A commits its now-stale plan. The guarded commit
// must refuse it, and A's retry must place nothing more.
func TestStalePlanNeverOvercommits(t *testing.T) {
	st := seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec := events.NewRecorder(st, nil)
	gated := &gatedStore{Store: st, gate: make(chan struct{}), reached: make(chan struct{})}
	a := New(Options{Store: gated, Events: rec})

	type result struct {
		again bool
		err   error
	}
	done := make(chan result, 1)
	go func() { again, err := a.Reconcile(ctx); done <- result{again, err} }()
	<-gated.reached // A has its plan for web-00..04 and is about to commit
	// Another planner commits first: 5 other instances onto n1, filling it,
	// bumping n1's placement key as every plan does. A's instances are
	// untouched, so only the placement key can tell A it is stale.
	var other store.Txn
	for i := 0; i < 5; i++ {
		in := model.Instance{ID: fmt.Sprintf("other-%d", i), Namespace: "default", App: "web", Revision: 1, Node: "n1",
			Desired: model.DesiredRun, Resources: model.Resources{CPU: 200, Memory: 1 << 30},
			HostPorts: map[string]int{"http": 30000 + i}, Status: model.InstanceStatus{State: model.StateRunning}}
		b, _ := json.Marshal(in)
		other.Ops = append(other.Ops, store.Put(in.Key(), b))
	}
	other.Ops = append(other.Ops, store.Put(model.PlacementKey("n1"), []byte("1")))
	if _, err := st.Txn(ctx, other); err != nil {
		t.Fatal(err)
	}
	close(gated.gate)
	r := <-done
	if r.err != nil || !r.again {
		t.Fatalf("stale commit: again=%v err=%v, want a refused commit and a retry", r.again, r.err)
	}
	if _, err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlacements(t, st, 5)
}

// TestRacingPlannersNeverOvercommit runs several planners at once.
func TestRacingPlannersNeverOvercommit(t *testing.T) {
	st := seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec := events.NewRecorder(st, nil)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := New(Options{Store: st, Events: rec})
			for i := 0; i < 10; i++ {
				if _, err := c.Reconcile(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkPlacements(t, st, 5)
}

// checkPlacements asserts exactly want placements, distinct host ports and
// the scheduler's reason on the rest.
func checkPlacements(t *testing.T, st store.Store, want int) {
	t.Helper()
	insts, err := store.ListValues[model.Instance](context.Background(), st, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	placed, ports := 0, map[int]string{}
	for _, in := range insts {
		if in.Node == "" {
			if in.PlacementMessage != "0/1 nodes fit: insufficient cpu (need 0.2, free 0)" {
				t.Errorf("%s unplaced with message %q", in.ID, in.PlacementMessage)
			}
			continue
		}
		placed++
		p := in.HostPorts["http"]
		if other, dup := ports[p]; dup {
			t.Fatalf("host port %d given to %s and %s", p, other, in.ID)
		}
		ports[p] = in.ID
	}
	if placed != want {
		t.Fatalf("%d instances placed on a node that fits %d", placed, want)
	}
}

func mustPut(t *testing.T, s store.Store, key string, v any) {
	t.Helper()
	if _, err := store.PutJSON(context.Background(), s, key, v, 0); err != nil {
		t.Fatal(err)
	}
}

// listCounter counts Lists of the placement keys.
type listCounter struct {
	store.Store
	lists atomic.Int32
}

func (l *listCounter) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if prefix == model.PrefixPlacements {
		l.lists.Add(1)
	}
	return l.Store.List(ctx, prefix)
}

// A pass with nothing to place (most are: status writes, heartbeats)
// does not read every node's placement key.
func TestPassWithNothingToPlaceReadsNoPlacementKeys(t *testing.T) {
	lc := &listCounter{Store: seed(t)}
	c := New(Options{Store: lc, Events: events.NewRecorder(lc, nil)})
	ctx := context.Background()
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := lc.lists.Load(); n != 1 {
		t.Fatalf("the pass that placed listed placement keys %d times, want 1", n)
	}
	checkPlacements(t, lc.Store, 5)
	// The 15 that did not fit are stopped: nothing is left to place.
	insts, err := store.ListValues[model.Instance](ctx, lc.Store, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if in.Node == "" {
			in.Desired = model.DesiredStop
			b, _ := json.Marshal(in)
			if _, err := lc.Store.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(in.Key(), b)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := lc.lists.Load(); n != 1 {
		t.Fatalf("a pass with nothing to place listed placement keys (%d lists in all)", n-1)
	}
}
