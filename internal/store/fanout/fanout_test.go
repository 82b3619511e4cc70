package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/fanout"
)

const prefix = "/things/"

func route(kv store.KV) string {
	var v struct{ Owner string }
	if json.Unmarshal(kv.Value, &v) != nil {
		return ""
	}
	return v.Owner
}

// setup opens a real store, lets seed write to it and runs a hub on it;
// both end with the test.
func setup(t *testing.T, o fanout.Options, seed ...func(store.Store)) (store.Store, *fanout.Hub) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range seed {
		f(st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Store, o.Prefix, o.Route = st, prefix, route
	h := fanout.New(o)
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return st, h
}

func put(t *testing.T, st store.Store, key, owner string) int64 {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"Owner": owner})
	rev, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(prefix+key, b)}})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func del(t *testing.T, st store.Store, key string) int64 {
	t.Helper()
	rev, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Delete(prefix + key)}})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// next reads one event or fails after a few seconds.
func next(t *testing.T, s *fanout.Sub) store.Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return store.Event{}
}

func quiet(t *testing.T, s *fanout.Sub) {
	t.Helper()
	select {
	case ev := <-s.Events():
		t.Fatalf("unexpected event %v %s", ev.Type, ev.KV.Key)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestRoutesByOwner(t *testing.T) {
	// "old" is written before the hub's first List: its owner is known
	// from it.
	var seeded int64
	st, h := setup(t, fanout.Options{}, func(st store.Store) { seeded = put(t, st, "old", "a") })
	ctx := context.Background()
	if _, err := h.Subscribe(ctx, "a", 0); !errors.Is(err, fanout.ErrTooOld) {
		t.Fatalf("subscribe before the first List: %v, want ErrTooOld", err)
	}
	a, err := h.Subscribe(ctx, "a", seeded)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe(ctx, "b", seeded)
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "x", "b")
	put(t, st, "free", "") // nobody's
	put(t, st, "y", "a")
	del(t, st, "free")
	del(t, st, "old") // a's, learnt from the List
	if ev := next(t, b); ev.KV.Key != prefix+"x" {
		t.Fatalf("b got %s", ev.KV.Key)
	}
	if ev := next(t, a); ev.KV.Key != prefix+"y" || ev.Type != store.EventPut {
		t.Fatalf("a got %v %s, want put y", ev.Type, ev.KV.Key)
	}
	if ev := next(t, a); ev.KV.Key != prefix+"old" || ev.Type != store.EventDelete {
		t.Fatalf("a got %v %s, want delete old", ev.Type, ev.KV.Key)
	}
	quiet(t, a)
	quiet(t, b)
	// Drained: the progress revision covers the whole stream.
	last := del(t, st, "x")
	if ev := next(t, b); ev.Type != store.EventDelete {
		t.Fatalf("b got %v, want the delete of x", ev.Type)
	}
	if rev, ok := a.Rev(); !ok || rev != last {
		t.Fatalf("a.Rev() = %d, %v; want %d, true", rev, ok, last)
	}
}

func TestResumeFromHistory(t *testing.T) {
	st, h := setup(t, fanout.Options{History: 4})
	ctx := context.Background()
	// The hub has listed once it answers a subscription.
	if _, err := h.Subscribe(ctx, "warm", 0); err != nil {
		t.Fatal(err)
	}
	r1 := put(t, st, "k1", "a")
	r2 := put(t, st, "k2", "a")
	r3 := put(t, st, "k3", "b")
	waitRev(t, h, "b", r3)
	s, err := h.Subscribe(ctx, "a", r1)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, s); ev.KV.ModRev != r2 {
		t.Fatalf("resumed at %d, want %d", ev.KV.ModRev, r2)
	}
	quiet(t, s)
	// Enough new events push r1 out of the history.
	var last int64
	for i := 0; i < 6; i++ {
		last = put(t, st, "k1", "a")
	}
	waitRev(t, h, "a", last)
	if _, err := h.Subscribe(ctx, "a", r1); !errors.Is(err, fanout.ErrTooOld) {
		t.Fatalf("subscribe after %d: %v, want ErrTooOld", r1, err)
	}
}

// waitRev waits until the hub has routed revision rev, owner's.
func waitRev(t *testing.T, h *fanout.Hub, owner string, rev int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := h.Subscribe(ctx, owner, rev-1)
	if err != nil {
		t.Fatal(err)
	}
	for ev := next(t, s); ev.KV.ModRev < rev; ev = next(t, s) {
	}
}

func TestSlowSubscriberDropped(t *testing.T) {
	st, h := setup(t, fanout.Options{Buffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := h.Subscribe(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		put(t, st, "k", "a")
	}
	waitRev(t, h, "b", put(t, st, "other", "b")) // all of a's are routed
	deadline := time.After(5 * time.Second)
	for n := 0; ; n++ {
		select {
		case _, ok := <-s.Events():
			if !ok {
				if n > 2 {
					t.Fatalf("got %d events before the close, buffer is 2", n)
				}
				return
			}
		case <-deadline:
			t.Fatal("a subscriber 5 events behind with a buffer of 2 was not dropped")
		}
	}
}

func TestEndsWithContext(t *testing.T) {
	_, h := setup(t, fanout.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := h.Subscribe(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-s.Events():
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after the context ended")
	}
}

// OwnsGroup follows keys as they are put, move to another owner and are
// deleted, including those known from the first List.
func TestOwnsGroup(t *testing.T) {
	group := func(key string) string { return key[len(prefix) : len(prefix)+1] } // "g1" → "g"
	st, h := setup(t, fanout.Options{Group: group}, func(st store.Store) { put(t, st, "p1", "a") })
	ctx := context.Background()
	owns := func(owner, g string, want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := h.OwnsGroup(ctx, owner, g)
			if err != nil {
				t.Fatal(err)
			}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("OwnsGroup(%s, %s) = %v, want %v", owner, g, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	owns("a", "p", true) // from the List
	owns("b", "p", false)
	put(t, st, "q1", "b")
	put(t, st, "q2", "b")
	owns("b", "q", true)
	put(t, st, "q1", "a") // moved: b still holds q2
	owns("a", "q", true)
	owns("b", "q", true)
	del(t, st, "q2")
	owns("b", "q", false)
	put(t, st, "q1", "") // unassigned
	owns("a", "q", false)
	del(t, st, "p1")
	owns("a", "p", false)
}
