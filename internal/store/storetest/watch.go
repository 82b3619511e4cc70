package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

var watchTests = []test{
	{"WatchReplayThenLive", testWatchReplayThenLive},
	{"WatchFromFutureRev", testWatchFromFutureRev},
	{"WatchPrefix", testWatchPrefix},
	{"WatchDeleteEvents", testWatchDeleteEvents},
	{"WatchTxnEvents", testWatchTxnEvents},
	{"WatchNoGapNoDuplicate", testWatchNoGapNoDuplicate},
	{"WatchFanOut", testWatchFanOut},
	{"WatchCancel", testWatchCancel},
	{"WatchCancelledContext", testWatchCancelledContext},
	{"WatchSlowReaderDoesNotBlockWriters", testWatchSlowReader},
}

func watch(t *testing.T, s store.Store, prefix string, afterRev int64) <-chan store.Event {
	t.Helper()
	ch, err := s.Watch(ctx(t), prefix, afterRev)
	if err != nil {
		t.Fatalf("Watch(%q, %d): %v", prefix, afterRev, err)
	}
	return ch
}

// collect reads n events, failing if the channel closes first.
func collect(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	out := make([]store.Event, 0, n)
	stop := time.After(timeout)
	for len(out) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events: %v", len(out), n, out)
			}
			out = append(out, e)
		case <-stop:
			t.Fatalf("watch hung after %d of %d events", len(out), n)
		}
	}
	return out
}

// drainUntilClosed reads until the channel is closed.
func drainUntilClosed(t *testing.T, ch <-chan store.Event) []store.Event {
	t.Helper()
	var out []store.Event
	stop := time.After(timeout)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, e)
		case <-stop:
			t.Fatalf("watch channel not closed (%d events read)", len(out))
		}
	}
}

func putEv(key, val string, create, mod int64) store.Event {
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: []byte(val), CreateRev: create, ModRev: mod}}
}

func delEv(key string, mod int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRev: mod}}
}

func evString(e store.Event) string {
	if e.Type == store.EventDelete {
		return fmt.Sprintf("delete %s @%d (value %q)", e.KV.Key, e.KV.ModRev, e.KV.Value)
	}
	return fmt.Sprintf("put %s=%q create %d @%d", e.KV.Key, e.KV.Value, e.KV.CreateRev, e.KV.ModRev)
}

// checkEvents compares events field by field; a delete must carry a nil
// value, and its CreateRev is not checked.
func checkEvents(t *testing.T, what string, got, want []store.Event) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Type == w.Type && g.KV.Key == w.KV.Key && g.KV.ModRev == w.KV.ModRev &&
			bytes.Equal(g.KV.Value, w.KV.Value)
		if w.Type == store.EventPut {
			ok = ok && g.KV.CreateRev == w.KV.CreateRev
		} else {
			ok = ok && g.KV.Value == nil
		}
	}
	if !ok {
		var gs, ws []string
		for _, e := range got {
			gs = append(gs, evString(e))
		}
		for _, e := range want {
			ws = append(ws, evString(e))
		}
		t.Fatalf("%s:\n got  %q\n want %q", what, gs, ws)
	}
}

func testWatchReplayThenLive(t *testing.T, s store.Store) {
	r1 := put(t, s, "/w/a", "1")
	r2 := put(t, s, "/w/b", "2")
	put(t, s, "/x/a", "other")
	r3 := put(t, s, "/w/a", "3")
	ch := watch(t, s, "/w/", r1-1)
	mid := watch(t, s, "/w/", r2) // starts inside the history
	r4 := put(t, s, "/w/c", "4")
	want := []store.Event{putEv("/w/a", "1", r1, r1), putEv("/w/b", "2", r2, r2), putEv("/w/a", "3", r1, r3), putEv("/w/c", "4", r4, r4)}
	checkEvents(t, "watch from before the first write", collect(t, ch, 4), want)
	checkEvents(t, "watch from the middle of the history", collect(t, mid, 2), want[2:])

	cur := watch(t, s, "/w/", rev(t, s))
	r5 := put(t, s, "/w/d", "5")
	checkEvents(t, "watch from the current revision", collect(t, cur, 1), []store.Event{putEv("/w/d", "5", r5, r5)})
}

func testWatchFromFutureRev(t *testing.T, s store.Store) {
	cur := rev(t, s)
	ch := watch(t, s, "/f/", cur+2)
	put(t, s, "/f/1", "1")
	put(t, s, "/f/2", "2")
	r3 := put(t, s, "/f/3", "3")
	checkEvents(t, "watch after a future revision", collect(t, ch, 1), []store.Event{putEv("/f/3", "3", r3, r3)})
}

func testWatchPrefix(t *testing.T, s store.Store) {
	cur := rev(t, s)
	only := watch(t, s, "/only/", cur)
	all := watch(t, s, "", cur)
	r1 := put(t, s, "/only", "no")
	r2 := put(t, s, "/onlyx/a", "no")
	r3 := put(t, s, "/other/x", "no")
	r4 := put(t, s, "/only/x", "yes")
	r5 := put(t, s, "/only/x/y", "yes")
	checkEvents(t, "watch /only/", collect(t, only, 2), []store.Event{putEv("/only/x", "yes", r4, r4), putEv("/only/x/y", "yes", r5, r5)})
	checkEvents(t, `watch ""`, collect(t, all, 5), []store.Event{
		putEv("/only", "no", r1, r1), putEv("/onlyx/a", "no", r2, r2), putEv("/other/x", "no", r3, r3),
		putEv("/only/x", "yes", r4, r4), putEv("/only/x/y", "yes", r5, r5)})
	// The same filtering applies to replayed history.
	checkEvents(t, "replayed watch /only/", collect(t, watch(t, s, "/only/", cur), 2),
		[]store.Event{putEv("/only/x", "yes", r4, r4), putEv("/only/x/y", "yes", r5, r5)})
}

func testWatchDeleteEvents(t *testing.T, s store.Store) {
	r := put(t, s, "/d/x", "1")
	live := watch(t, s, "/d/", r)
	if _, err := s.Txn(ctx(t), store.Txn{Ops: []store.Op{store.Delete("/d/none")}}); err != nil {
		t.Fatal(err)
	}
	rd := del(t, s, "/d/x")
	rp := put(t, s, "/d/x", "2")
	want := []store.Event{delEv("/d/x", rd), putEv("/d/x", "2", rp, rp)}
	// A delete of a missing key changes nothing and sends no event.
	checkEvents(t, "live delete events", collect(t, live, 2), want)
	checkEvents(t, "replayed delete events", collect(t, watch(t, s, "/d/", r), 2), want)
}

func testWatchTxnEvents(t *testing.T, s store.Store) {
	rb := put(t, s, "/m/b", "old")
	live := watch(t, s, "/m/", rb)
	r := txn(t, s, store.Txn{Ops: []store.Op{
		store.Put("/m/c", []byte("c")), store.Delete("/m/b"), store.Put("/m/a", []byte("a")), store.Put("/other", []byte("x"))}})
	want := []store.Event{putEv("/m/c", "c", r, r), delEv("/m/b", r), putEv("/m/a", "a", r, r)}
	checkEvents(t, "live events of one txn (op order, one revision)", collect(t, live, 3), want)
	checkEvents(t, "replayed events of one txn", collect(t, watch(t, s, "/m/", rb), 3), want)
}

// testWatchNoGapNoDuplicate starts watches, some replaying history and
// some from the head, while several goroutines commit. Each watch must see
// exactly the writes under its prefix after its revision, in order.
func testWatchNoGapNoDuplicate(t *testing.T, s store.Store) {
	const perWriter = 150
	base := rev(t, s)
	c := ctx(t)
	var (
		mu      sync.Mutex
		written = map[int64]string{} // revision -> /load/ key written there
		wg      sync.WaitGroup
		errs    = make(chan error, 3)
	)
	for _, prefix := range []string{"/load/a/", "/load/b/", "/noise/"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				k := fmt.Sprintf("%s%04d", prefix, i)
				r, err := s.Txn(c, store.Txn{Ops: []store.Op{store.Put(k, []byte("v"))}})
				if err != nil {
					errs <- err
					return
				}
				if prefix != "/noise/" {
					mu.Lock()
					written[r] = k
					mu.Unlock()
				}
			}
		}()
	}
	type started struct {
		after int64
		ch    <-chan store.Event
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	// One watch from the start; the others begin while commits go on.
	watches := []started{{base, watch(t, s, "/load/", base)}}
	for i := 0; ; i++ {
		select {
		case <-writersDone:
		default:
			cur := rev(t, s)
			after := cur
			if i%2 == 1 { // replay some history while commits go on
				after = base + (cur-base)/2
			}
			watches = append(watches, started{after, watch(t, s, "/load/", after)})
			time.Sleep(time.Millisecond) // spread the starts over the writes
			continue
		}
		break
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sentinel := put(t, s, "/load/zz-sentinel", "end")
	revs := make([]int64, 0, len(written))
	for r := range written {
		revs = append(revs, r)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for _, w := range watches {
		var want []store.Event
		for _, r := range revs {
			if r > w.after {
				want = append(want, putEv(written[r], "v", r, r))
			}
		}
		// The sentinel must come right after: nothing missing, nothing twice.
		want = append(want, putEv("/load/zz-sentinel", "end", sentinel, sentinel))
		checkEvents(t, fmt.Sprintf("watch after %d", w.after), collect(t, w.ch, len(want)), want)
	}
	t.Logf("%d watches started during %d concurrent commits", len(watches), 3*perWriter)
}

func testWatchFanOut(t *testing.T, s store.Store) {
	const watchers, writes = 10, 50
	cur := rev(t, s)
	chans := make([]<-chan store.Event, watchers)
	for i := range chans {
		chans[i] = watch(t, s, "/fan/", cur)
	}
	var want []store.Event
	for i := 0; i < writes; i++ {
		k := fmt.Sprintf("/fan/%d", i%7)
		r := put(t, s, k, fmt.Sprint(i))
		create := r
		if i >= 7 {
			create = want[i-7].KV.CreateRev
		}
		want = append(want, putEv(k, fmt.Sprint(i), create, r))
	}
	for i, ch := range chans {
		checkEvents(t, fmt.Sprintf("watcher %d", i), collect(t, ch, writes), want)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	r := put(t, s, "/k", "v")
	c, cancel := context.WithCancel(context.Background())
	ch, err := s.Watch(c, "/", r-1)
	if err != nil {
		t.Fatal(err)
	}
	other := watch(t, s, "/", r)
	cancel()
	if evs := drainUntilClosed(t, ch); len(evs) > 1 {
		t.Fatalf("cancelled watch delivered %d events, want at most the 1 replayed", len(evs))
	}
	// The store and other watches carry on.
	r2 := put(t, s, "/k", "w")
	checkEvents(t, "other watch", collect(t, other, 1), []store.Event{putEv("/k", "w", r, r2)})
}

func testWatchCancelledContext(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	ch, err := s.Watch(c, "/", 0)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch with a cancelled context: %v, want context.Canceled or a closed channel", err)
		}
		return
	}
	drainUntilClosed(t, ch)
}

// testWatchSlowReader: a watcher that never reads must not hold up
// writers. The backend may drop it; what it did receive must then be an
// unbroken prefix of the changes, followed by the channel closing.
func testWatchSlowReader(t *testing.T, s store.Store) {
	const txns, opsPerTxn = 100, 100
	cur := rev(t, s)
	slow := watch(t, s, "/slow/", cur)
	c := ctx(t)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < txns; i++ {
			var ops []store.Op
			for j := 0; j < opsPerTxn; j++ {
				ops = append(ops, store.Put(fmt.Sprintf("/slow/%03d/%03d", i, j), []byte("v")))
			}
			if _, err := s.Txn(c, store.Txn{Ops: ops}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout):
		t.Fatal("writers blocked by a watcher that does not read")
	}
	var want []store.Event
	for i := 0; i < txns; i++ {
		r := cur + int64(i) + 1
		for j := 0; j < opsPerTxn; j++ {
			want = append(want, putEv(fmt.Sprintf("/slow/%03d/%03d", i, j), "v", r, r))
		}
	}
	var got []store.Event
	stop := time.After(timeout)
	for len(got) < len(want) {
		select {
		case e, ok := <-slow:
			if !ok {
				checkEvents(t, "events before the slow watcher was dropped", got, want[:len(got)])
				t.Logf("slow watcher dropped after %d of %d events", len(got), len(want))
				return
			}
			got = append(got, e)
		case <-stop:
			t.Fatalf("slow watcher neither delivered nor closed after %d events", len(got))
		}
	}
	checkEvents(t, "slow watcher (kept)", got, want)
}

func testWatchCompacted(t *testing.T, s store.Store, history int64) {
	for i := int64(0); i < history+10; i++ {
		put(t, s, fmt.Sprintf("/c/%d", i), "v")
	}
	if _, err := s.Watch(ctx(t), "/", 0); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch after revision 0 with %d revisions kept: %v, want ErrCompacted", history, err)
	}
	cur := rev(t, s)
	after := cur - history/2
	evs := collect(t, watch(t, s, "/c/", after), int(cur-after))
	for i, e := range evs {
		if e.KV.ModRev != after+int64(i)+1 {
			t.Fatalf("replay inside the kept history: event %d at %d, want %d", i, e.KV.ModRev, after+int64(i)+1)
		}
	}
}
