// Package storetest is the conformance suite every store.Store backend
// must pass: run it from the backend's tests with a fresh store per call.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// Options describe optional abilities of a backend.
type Options struct {
	// HistoryRevisions, if > 0, is the backend's configured change-log
	// window; the suite then checks ErrCompacted beyond it.
	HistoryRevisions int64
}

// Run runs every conformance test; open must return a new, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store, o Options) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"GetNotFound", testGetNotFound},
		{"PutGetRevisions", testPutGetRevisions},
		{"ListSortedPrefix", testListSortedPrefix},
		{"TxnAtomic", testTxnAtomic},
		{"CompareMustNotExist", testCompareMustNotExist},
		{"DeleteAndRecreate", testDeleteAndRecreate},
		{"EmptyTxn", testEmptyTxn},
		{"WatchReplayAndLive", testWatchReplayAndLive},
		{"WatchNoGapUnderLoad", testWatchNoGapUnderLoad},
		{"WatchPrefixAndDelete", testWatchPrefixAndDelete},
		{"WatchCancel", testWatchCancel},
		{"ConcurrentCAS", testConcurrentCAS},
		{"TypedHelpers", testTypedHelpers},
		{"CloseEndsWatches", testCloseEndsWatches},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	if o.HistoryRevisions > 0 {
		t.Run("Compacted", func(t *testing.T) { testCompacted(t, open(t), o.HistoryRevisions) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, s store.Store, key, val string) int64 {
	t.Helper()
	rev, err := s.Txn(ctx(t), store.Txn{Ops: []store.Op{store.Put(key, []byte(val))}})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return rev
}

func testGetNotFound(t *testing.T, s store.Store) {
	if _, err := s.Get(ctx(t), "/nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
}

func testPutGetRevisions(t *testing.T, s store.Store) {
	r0, _ := s.Rev(ctx(t))
	r1 := put(t, s, "/a", "1")
	r2 := put(t, s, "/a", "2")
	if r1 != r0+1 || r2 != r1+1 {
		t.Fatalf("revisions %d, %d after %d: each write must add exactly 1", r1, r2, r0)
	}
	kv, err := s.Get(ctx(t), "/a")
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != "2" || kv.CreateRev != r1 || kv.ModRev != r2 {
		t.Fatalf("got %+v, want value 2 create %d mod %d", kv, r1, r2)
	}
	if cur, _ := s.Rev(ctx(t)); cur != r2 {
		t.Fatalf("Rev %d, want %d", cur, r2)
	}
}

func testListSortedPrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"/p/c", "/p/a", "/q/x", "/p/b", "/pz"} {
		put(t, s, k, k)
	}
	kvs, rev, err := s.List(ctx(t), "/p/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, kv.Key)
	}
	if fmt.Sprint(keys) != "[/p/a /p/b /p/c]" {
		t.Fatalf("List /p/ = %v", keys)
	}
	if cur, _ := s.Rev(ctx(t)); rev != cur {
		t.Fatalf("List rev %d, current %d", rev, cur)
	}
}

func testTxnAtomic(t *testing.T, s store.Store) {
	r := put(t, s, "/x", "1")
	_, err := s.Txn(ctx(t), store.Txn{
		Compares: []store.Compare{{Key: "/x", ModRev: r + 100}},
		Ops:      []store.Op{store.Put("/x", []byte("2")), store.Put("/y", []byte("2"))}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("failed compare: %v, want ErrConflict", err)
	}
	if kv, _ := s.Get(ctx(t), "/x"); string(kv.Value) != "1" {
		t.Fatal("a failed txn wrote /x")
	}
	if _, err := s.Get(ctx(t), "/y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a failed txn wrote /y")
	}
	if cur, _ := s.Rev(ctx(t)); cur != r {
		t.Fatalf("a failed txn moved the revision to %d", cur)
	}
	r2, err := s.Txn(ctx(t), store.Txn{
		Compares: []store.Compare{{Key: "/x", ModRev: r}},
		Ops:      []store.Op{store.Put("/x", []byte("2")), store.Put("/y", []byte("2")), store.Delete("/missing")}})
	if err != nil || r2 != r+1 {
		t.Fatalf("txn: rev %d err %v", r2, err)
	}
	for _, k := range []string{"/x", "/y"} {
		if kv, _ := s.Get(ctx(t), k); kv.ModRev != r2 {
			t.Fatalf("%s ModRev %d, want %d (one revision per txn)", k, kv.ModRev, r2)
		}
	}
}

func testCompareMustNotExist(t *testing.T, s store.Store) {
	create := store.Txn{Compares: []store.Compare{{Key: "/once", ModRev: 0}}, Ops: []store.Op{store.Put("/once", []byte("v"))}}
	if _, err := s.Txn(ctx(t), create); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(ctx(t), create); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
}

func testDeleteAndRecreate(t *testing.T, s store.Store) {
	put(t, s, "/d", "1")
	rd, err := s.Txn(ctx(t), store.Txn{Ops: []store.Op{store.Delete("/d")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), "/d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("deleted key still there")
	}
	r := put(t, s, "/d", "2")
	kv, _ := s.Get(ctx(t), "/d")
	if kv.CreateRev != r || r != rd+1 {
		t.Fatalf("recreated key CreateRev %d, want %d", kv.CreateRev, r)
	}
}

func testEmptyTxn(t *testing.T, s store.Store) {
	r := put(t, s, "/e", "1")
	got, err := s.Txn(ctx(t), store.Txn{Compares: []store.Compare{{Key: "/e", ModRev: r}}})
	if err != nil || got != r {
		t.Fatalf("empty txn: %d %v, want %d", got, err, r)
	}
	if _, err := s.Txn(ctx(t), store.Txn{Compares: []store.Compare{{Key: "/e", ModRev: 0}}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("empty txn with failing compare: %v", err)
	}
}

// collect reads n events or fails after a generous timeout.
func collect(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	var out []store.Event
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

func testWatchReplayAndLive(t *testing.T, s store.Store) {
	r1 := put(t, s, "/w/a", "1")
	put(t, s, "/w/b", "2")
	ch, err := s.Watch(ctx(t), "/w/", r1-1)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "/w/c", "3")
	evs := collect(t, ch, 3)
	for i, want := range []string{"/w/a", "/w/b", "/w/c"} {
		if evs[i].KV.Key != want || evs[i].Type != store.EventPut || evs[i].KV.ModRev != r1+int64(i) {
			t.Fatalf("event %d = %+v, want put %s at %d", i, evs[i], want, r1+int64(i))
		}
	}
}

func testWatchNoGapUnderLoad(t *testing.T, s store.Store) {
	const writes = 300
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < writes; i++ {
			put(t, s, fmt.Sprintf("/load/%04d", i), "v")
		}
	}()
	// Start watches at arbitrary points while writes go on; each must see
	// every revision after its start exactly once and in order.
	type started struct {
		after int64
		ch    <-chan store.Event
	}
	var watches []started
	for i := 0; i < 5; i++ {
		time.Sleep(time.Millisecond)
		rev, _ := s.Rev(ctx(t))
		ch, err := s.Watch(ctx(t), "/load/", rev)
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, started{rev, ch})
	}
	wg.Wait()
	final, _ := s.Rev(ctx(t))
	for _, w := range watches {
		evs := collect(t, w.ch, int(final-w.after))
		for i, e := range evs {
			if e.KV.ModRev != w.after+int64(i)+1 {
				t.Fatalf("watch from %d: event %d at rev %d, want %d", w.after, i, e.KV.ModRev, w.after+int64(i)+1)
			}
		}
	}
}

func testWatchPrefixAndDelete(t *testing.T, s store.Store) {
	rev, _ := s.Rev(ctx(t))
	ch, err := s.Watch(ctx(t), "/only/", rev)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "/other/x", "1")
	r := put(t, s, "/only/x", "1")
	rd, err := s.Txn(ctx(t), store.Txn{Ops: []store.Op{store.Delete("/only/x")}})
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch, 2)
	if evs[0].KV.Key != "/only/x" || evs[0].KV.ModRev != r || evs[0].Type != store.EventPut {
		t.Fatalf("first event %+v", evs[0])
	}
	if evs[1].Type != store.EventDelete || evs[1].KV.Key != "/only/x" || evs[1].KV.ModRev != rd || evs[1].KV.Value != nil {
		t.Fatalf("delete event %+v", evs[1])
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(context.Background())
	ch, err := s.Watch(c, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

func testCloseEndsWatches(t *testing.T, s store.Store) {
	ch, err := s.Watch(ctx(t), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after close")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch not closed by Close")
	}
	if _, err := s.Get(ctx(t), "/x"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	type counter struct{ N int }
	if _, err := store.PutJSON(ctx(t), s, "/counter", counter{}, 0); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := store.Update(ctx(t), s, "/counter", func(c *counter) error { c.N++; return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	o, err := store.GetJSON[counter](ctx(t), s, "/counter")
	if err != nil || o.Value.N != workers*each {
		t.Fatalf("counter %d (err %v), want %d: an update was lost", o.Value.N, err, workers*each)
	}
}

func testTypedHelpers(t *testing.T, s store.Store) {
	type obj struct{ A string }
	if _, err := store.PutJSON(ctx(t), s, "/t/1", obj{"x"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutJSON(ctx(t), s, "/t/1", obj{"y"}, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutJSON create twice: %v", err)
	}
	if _, err := store.Update(ctx(t), s, "/t/missing", func(*obj) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update missing: %v", err)
	}
	before, _ := s.Rev(ctx(t))
	if _, err := store.Update(ctx(t), s, "/t/1", func(*obj) error { return store.ErrSkip }); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Rev(ctx(t)); after != before {
		t.Fatal("ErrSkip wrote")
	}
	vals, err := store.ListValues[obj](ctx(t), s, "/t/")
	if err != nil || len(vals) != 1 || vals[0].A != "x" {
		t.Fatalf("ListValues %v %v", vals, err)
	}
}

func testCompacted(t *testing.T, s store.Store, history int64) {
	for i := int64(0); i < history+10; i++ {
		put(t, s, "/c", "v")
	}
	if _, err := s.Watch(ctx(t), "/", 1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from compacted rev: %v, want ErrCompacted", err)
	}
	cur, _ := s.Rev(ctx(t))
	if _, err := s.Watch(ctx(t), "/", cur-history/2); err != nil {
		t.Fatalf("watch inside history: %v", err)
	}
}
