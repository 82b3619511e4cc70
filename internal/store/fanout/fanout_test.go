package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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

// stream reads a subscriber one event at a time.
type stream struct {
	*fanout.Sub
	queued []store.Event
	ended  bool
}

func subscribe(ctx context.Context, h *fanout.Hub, owner string, after int64) (*stream, error) {
	s, err := h.Subscribe(ctx, owner, after)
	if err != nil {
		return nil, err
	}
	return &stream{Sub: s}, nil
}

// recv returns the next event within d; ok is false once the stream has
// ended, timedOut true if nothing came.
func (s *stream) recv(d time.Duration) (ev store.Event, ok, timedOut bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(s.queued) == 0 {
		if s.ended {
			return ev, false, false
		}
		select {
		case <-s.Ready():
			evs, live := s.Take()
			s.queued, s.ended = append(s.queued, evs...), !live
		case <-timer.C:
			return ev, false, true
		}
	}
	ev, s.queued = s.queued[0], s.queued[1:]
	return ev, true, false
}

// next reads one event or fails after a few seconds.
func next(t *testing.T, s *stream) store.Event {
	t.Helper()
	ev, ok, timedOut := s.recv(5 * time.Second)
	switch {
	case timedOut:
		t.Fatal("no event within 5s")
	case !ok:
		t.Fatal("subscription closed")
	}
	return ev
}

func quiet(t *testing.T, s *stream) {
	t.Helper()
	if ev, _, timedOut := s.recv(200 * time.Millisecond); !timedOut {
		t.Fatalf("unexpected event %v %s", ev.Type, ev.KV.Key)
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
	a, err := subscribe(ctx, h, "a", seeded)
	if err != nil {
		t.Fatal(err)
	}
	b, err := subscribe(ctx, h, "b", seeded)
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
	s, err := subscribe(ctx, h, "a", r1)
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

// Other owners' events moving the history on do not turn away an owner
// whose own events after its revision are all still kept.
func TestResumeAfterOthersEventsWereTrimmed(t *testing.T) {
	st, h := setup(t, fanout.Options{History: 4})
	ctx := context.Background()
	if _, err := h.Subscribe(ctx, "warm", 0); err != nil {
		t.Fatal(err)
	}
	r1 := put(t, st, "k1", "a")
	var last int64
	for i := 0; i < 10; i++ {
		last = put(t, st, fmt.Sprintf("b%d", i), "b")
	}
	waitRev(t, h, "b", last)
	s, err := subscribe(ctx, h, "a", r1)
	if err != nil {
		t.Fatalf("subscribe a after %d with only b's events trimmed: %v", r1, err)
	}
	quiet(t, s)
	r2 := put(t, st, "k1", "a")
	if ev := next(t, s); ev.KV.ModRev != r2 {
		t.Fatalf("got revision %d, want %d", ev.KV.ModRev, r2)
	}
	// b itself, from before its trimmed events, must list again.
	if _, err := h.Subscribe(ctx, "b", r1); !errors.Is(err, fanout.ErrTooOld) {
		t.Fatalf("subscribe b after %d: %v, want ErrTooOld", r1, err)
	}
}

// waitRev waits until the hub has routed revision rev, owner's.
func waitRev(t *testing.T, h *fanout.Hub, owner string, rev int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := subscribe(ctx, h, owner, rev-1)
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
	s, err := subscribe(ctx, h, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		put(t, st, "k", "a")
	}
	waitRev(t, h, "b", put(t, st, "other", "b")) // all of a's are routed
	for n := 0; ; n++ {
		_, ok, timedOut := s.recv(5 * time.Second)
		if timedOut {
			t.Fatal("a subscriber 5 events behind with a buffer of 2 was not dropped")
		}
		if !ok {
			if n > 2 {
				t.Fatalf("got %d events before the close, buffer is 2", n)
			}
			return
		}
	}
}

// Dropping slow subscribers does not cost the owner's other subscriber
// an event.
func TestDropKeepsOthers(t *testing.T) {
	st, h := setup(t, fanout.Options{Buffer: 2})
	ctx := context.Background()
	slow1, err := h.Subscribe(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := subscribe(ctx, h, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	slow2, err := h.Subscribe(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		rev := put(t, st, "k", "a")
		if ev := next(t, r); ev.KV.ModRev != rev {
			t.Fatalf("reader got revision %d, want %d", ev.KV.ModRev, rev)
		}
	}
	for _, s := range []*fanout.Sub{slow1, slow2} {
		if evs, ok := s.Take(); ok || len(evs) != 2 {
			t.Fatalf("slow subscriber: %d events, ok %v; want 2, false", len(evs), ok)
		}
	}
}

func TestEndsWithContext(t *testing.T) {
	_, h := setup(t, fanout.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := subscribe(ctx, h, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, ok, timedOut := s.recv(5 * time.Second); timedOut {
		t.Fatal("subscription not ended after the context ended")
	} else if ok {
		t.Fatal("event after cancel")
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

// A subscriber that does not read keeps up to Buffer live events (plus
// its replay) queued, in order, and is dropped at the next one; taking
// them makes room again.
func TestQueueBound(t *testing.T) {
	st, h := setup(t, fanout.Options{Buffer: 3})
	ctx := context.Background()
	s, err := h.Subscribe(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	puts := func(n int) (revs []int64) {
		for i := 0; i < n; i++ {
			revs = append(revs, put(t, st, "k", "a"))
		}
		waitRev(t, h, "a", revs[n-1])
		return revs
	}
	take := func(wantOK bool, want []int64) {
		t.Helper()
		select {
		case <-s.Ready():
		case <-time.After(5 * time.Second):
			t.Fatal("not ready")
		}
		evs, ok := s.Take()
		if ok != wantOK || !slices.Equal(modRevs(evs), want) {
			t.Fatalf("Take() = %v, %v; want %v, %v", modRevs(evs), ok, want, wantOK)
		}
	}
	take(true, puts(3))
	if _, ok := s.Rev(); !ok {
		t.Fatal("Rev not ok with an empty queue")
	}
	full := puts(3)
	puts(1) // one too many
	take(false, full)
	if _, ok := s.Rev(); ok {
		t.Fatal("Rev ok after the subscriber was dropped")
	}

	// A replay does not count against Buffer.
	last := puts(2)
	r, err := h.Subscribe(ctx, "a", last[0]-1)
	if err != nil {
		t.Fatal(err)
	}
	want := append(last, puts(3)...)
	if evs, ok := r.Take(); !ok || !slices.Equal(modRevs(evs), want) {
		t.Fatalf("replay + Buffer: Take() = %v, %v; want %v, true", modRevs(evs), ok, want)
	}
}

// A subscriber reading while events are routed gets each of its owner's
// events once, in revision order, however its reads and the routing
// interleave.
func TestNoLostOrReordered(t *testing.T) {
	st, h := setup(t, fanout.Options{Buffer: 1000})
	ctx := context.Background()
	owners := []string{"a", "b", "c"}
	got := make([][]int64, len(owners))
	errc := make(chan error, len(owners))
	for i, owner := range owners {
		s, err := subscribe(ctx, h, owner, 0)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				ev, ok, _ := s.recv(10 * time.Second)
				if !ok {
					errc <- errors.New(owner + ": stream ended or stalled")
					return
				}
				if ev.KV.Key == prefix+"end" {
					errc <- nil
					return
				}
				got[i] = append(got[i], ev.KV.ModRev)
			}
		}()
	}
	want := make([][]int64, len(owners))
	for n := 0; n < 300; n++ {
		i := n % len(owners)
		want[i] = append(want[i], put(t, st, fmt.Sprintf("k%d", n%7), owners[i]))
	}
	for _, owner := range owners {
		put(t, st, "end", owner)
	}
	for range owners {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i, owner := range owners {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%s got revisions %v, want %v", owner, got[i], want[i])
		}
	}
}

func modRevs(evs []store.Event) []int64 {
	var revs []int64
	for _, ev := range evs {
		revs = append(revs, ev.KV.ModRev)
	}
	return revs
}
