package nodes

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

func TestSilentNodesGoDownAfterGrace(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	for name, hb := range map[string]time.Time{"fresh": t0, "silent": t0.Add(-time.Hour)} {
		n := model.Node{Name: name, Status: model.NodeReady, LastHeartbeat: hb}
		if _, err := store.PutJSON(ctx, st, model.NodeKey(name), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Grace: 30 * time.Second, Now: func() time.Time { return now }})
	c.started = t0
	status := func(name string) string {
		o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey(name))
		if err != nil {
			t.Fatal(err)
		}
		return o.Value.Status
	}

	// Within the controller's own start-up grace nothing goes down, even a
	// node whose stored heartbeat is an hour old.
	now = t0.Add(10 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if status("silent") != model.NodeReady {
		t.Fatal("node marked down during the start-up grace")
	}

	now = t0.Add(31 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if status("silent") != model.NodeDown || status("fresh") != model.NodeDown {
		t.Fatalf("after grace: silent=%s fresh=%s, both silent for over 30s", status("silent"), status("fresh"))
	}
	evs, _, err := events.List(ctx, st, events.Filter{}, 0)
	if err != nil || len(evs) != 2 || evs[0].Reason != "NodeDown" {
		t.Fatalf("events %+v %v", evs, err)
	}
}

func TestUnreachableThenDownThenRecoverWithHysteresis(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	put := func(hb time.Time) {
		if _, err := store.Update(ctx, st, model.NodeKey("n1"), func(n *model.Node) error { n.LastHeartbeat = hb; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.PutJSON(ctx, st, model.NodeKey("n1"), model.Node{Name: "n1", Status: model.NodeReady, LastHeartbeat: t0}, 0); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Grace: 10 * time.Second,
		UnreachableAfter: 4 * time.Second, RecoverAfter: 15 * time.Second, Now: func() time.Time { return now }})
	c.started = t0.Add(-time.Hour)
	step := func(at time.Duration, want string) {
		t.Helper()
		now = t0.Add(at)
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n1"))
		if err != nil {
			t.Fatal(err)
		}
		if o.Value.Status != want {
			t.Fatalf("at +%s: status %s, want %s", at, o.Value.Status, want)
		}
	}
	step(2*time.Second, model.NodeReady)
	step(5*time.Second, model.NodeUnreachable)
	step(11*time.Second, model.NodeDown)
	// Heartbeats resume: the node stays down until they were steady for
	// RecoverAfter; a gap restarts the count.
	put(t0.Add(12 * time.Second))
	step(12*time.Second, model.NodeDown)
	step(20*time.Second, model.NodeDown) // silent again (8s): count restarts
	put(t0.Add(21 * time.Second))
	step(21*time.Second, model.NodeDown)
	put(t0.Add(30 * time.Second))
	step(30*time.Second, model.NodeDown)
	put(t0.Add(36 * time.Second))
	step(36*time.Second, model.NodeReady)
}

// Heartbeats kept in memory (Liveness) count as much as stored ones: a
// node whose object was last written an hour ago but that beats in
// memory stays ready; one that stops beating goes down after the grace.
func TestHeartbeatsInMemoryKeepNodesReady(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	for _, name := range []string{"beating", "stopped"} {
		n := model.Node{Name: name, Status: model.NodeReady, LastHeartbeat: t0.Add(-time.Hour)}
		if _, err := store.PutJSON(ctx, st, model.NodeKey(name), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	live := NewLiveness()
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Grace: 30 * time.Second, Now: func() time.Time { return now }, Liveness: live})
	c.started = t0.Add(-time.Hour) // past the start-up grace
	live.Beat("stopped", t0)
	for i := 0; i <= 40; i += 5 {
		now = t0.Add(time.Duration(i) * time.Second)
		live.Beat("beating", now)
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"beating": model.NodeReady, "stopped": model.NodeDown} {
		o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey(name))
		if err != nil {
			t.Fatal(err)
		}
		if o.Value.Status != want {
			t.Errorf("%s is %s, want %s", name, o.Value.Status, want)
		}
		if !o.Value.LastHeartbeat.Equal(t0.Add(-time.Hour)) {
			t.Errorf("%s: the stored heartbeat was rewritten to %s", name, o.Value.LastHeartbeat)
		}
	}
	if got := live.Last("beating", t0.Add(-time.Hour)); !got.Equal(now) {
		t.Errorf("Last = %s, want the in-memory beat %s", got, now)
	}
}

// beatOnGet records a heartbeat of node whenever the node's object is
// read: a beat that lands between a pass's listing and its write.
type beatOnGet struct {
	store.Store
	live *Liveness
	node string
	now  func() time.Time
}

func (b beatOnGet) Get(ctx context.Context, key string) (store.KV, error) {
	if key == model.NodeKey(b.node) {
		b.live.Beat(b.node, b.now())
	}
	return b.Store.Get(ctx, key)
}

// A heartbeat arriving during the pass that lifts a down node must not
// hold the recovery back (it restarted the hysteresis, so under steady
// load nodes stayed down while beating).
func TestBeatDuringPassDoesNotBlockRecovery(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	n := model.Node{Name: "n", Status: model.NodeDown, LastHeartbeat: t0.Add(-time.Hour)}
	if _, err := store.PutJSON(ctx, st, model.NodeKey("n"), n, 0); err != nil {
		t.Fatal(err)
	}
	live := NewLiveness()
	c := New(Options{Store: beatOnGet{Store: st, live: live, node: "n", now: func() time.Time { return now.Add(time.Millisecond) }},
		Events: events.NewRecorder(st, nil), Grace: 10 * time.Second, RecoverAfter: 15 * time.Second, Now: clock, Liveness: live})
	c.started = t0.Add(-time.Hour)
	for i := 0; i <= 20; i += 2 {
		now = t0.Add(time.Duration(i) * time.Second)
		live.Beat("n", now)
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Value.Status != model.NodeReady {
		t.Fatalf("after 20s of steady beats the node is %s, want ready", o.Value.Status)
	}
}

// In a cluster of 3,000 nodes agents beat every 3s instead of 2s
// (model.HeartbeatInterval), so the timeouts stretch by 1.5: a node
// silent for 6s (past the default 5s) is still ready, and unreachable
// only after 7.5s, down after 15s.
func TestTimeoutsStretchWithClusterSize(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	live := NewLiveness()
	const size = 3000
	var txn store.Txn
	for i := 0; i < size; i++ {
		name := "n" + strconv.Itoa(i)
		b, _ := json.Marshal(model.Node{Name: name, Status: model.NodeReady, LastHeartbeat: t0})
		txn.Ops = append(txn.Ops, store.Put(model.NodeKey(name), b))
	}
	if _, err := st.Txn(ctx, txn); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Liveness: live, Now: func() time.Time { return now }})
	c.started = t0.Add(-time.Hour)
	pass := func(at time.Duration) {
		now = t0.Add(at)
		for i := 1; i < size; i++ { // all but n0 keep beating
			live.Beat("n"+strconv.Itoa(i), now)
		}
		if _, err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n0"))
		if err != nil {
			t.Fatal(err)
		}
		return o.Value.Status
	}
	for _, step := range []struct {
		at   time.Duration
		want string
	}{{6 * time.Second, model.NodeReady}, {8 * time.Second, model.NodeUnreachable}, {14 * time.Second, model.NodeUnreachable}, {16 * time.Second, model.NodeDown}} {
		pass(step.at)
		if got := status(); got != step.want {
			t.Fatalf("silent for %s in a cluster of %d: %s, want %s", step.at, size, got, step.want)
		}
	}
}
