// Package storetest is the conformance suite every store.Store backend
// must pass. A backend's tests call Run with a function that opens a new,
// empty store (and closes it in t.Cleanup):
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... }, storetest.WithCompaction(50))
//	}
//
// The stores open returns must keep at least 1,000 revisions of history
// and buffer at least 1,000 events per watcher, so that no test runs into
// compaction or watcher drops it does not expect. The tests check
// behaviour only; timeouts exist solely to stop a hung test.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// Option adapts the suite to a backend's optional abilities.
type Option func(*config)

type config struct {
	history int64
}

// WithCompaction declares that the backend keeps only the latest
// historyRevisions revisions for Watch (as configured for the stores open
// returns), so the suite checks that older ones yield store.ErrCompacted.
func WithCompaction(historyRevisions int64) Option {
	return func(c *config) { c.history = historyRevisions }
}

// timeout stops a hung test; no test expects to come near it.
const timeout = time.Minute

type test struct {
	name string
	fn   func(*testing.T, store.Store)
}

// Run runs every conformance test, each on a fresh store from open.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	tests := []test{
		{"GetNotFound", testGetNotFound},
		{"Revisions", testRevisions},
		{"DeleteAndRecreate", testDeleteAndRecreate},
		{"DeleteMissing", testDeleteMissing},
		{"ListSortedPrefix", testListSortedPrefix},
		{"ListConsistentRev", testListConsistentRev},
		{"TxnAtomic", testTxnAtomic},
		{"TxnOpsInOrder", testTxnOpsInOrder},
		{"CompareModRev", testCompareModRev},
		{"EmptyTxn", testEmptyTxn},
		{"ConcurrentCAS", testConcurrentCAS},
		{"TypedHelpers", testTypedHelpers},
		{"UpdateErrors", testUpdateErrors},
		{"Close", testClose},
	}
	tests = append(tests, watchTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	if cfg.history > 0 {
		t.Run("WatchCompacted", func(t *testing.T) { testWatchCompacted(t, open(t), cfg.history) })
	}
}

// ctx is a context that only ends a hung test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

func txn(t *testing.T, s store.Store, tx store.Txn) int64 {
	t.Helper()
	rev, err := s.Txn(ctx(t), tx)
	if err != nil {
		t.Fatalf("Txn %+v: %v", tx, err)
	}
	return rev
}

func put(t *testing.T, s store.Store, key, val string) int64 {
	t.Helper()
	return txn(t, s, store.Txn{Ops: []store.Op{store.Put(key, []byte(val))}})
}

func del(t *testing.T, s store.Store, key string) int64 {
	t.Helper()
	return txn(t, s, store.Txn{Ops: []store.Op{store.Delete(key)}})
}

func rev(t *testing.T, s store.Store) int64 {
	t.Helper()
	r, err := s.Rev(ctx(t))
	if err != nil {
		t.Fatalf("Rev: %v", err)
	}
	return r
}

func get(t *testing.T, s store.Store, key string) store.KV {
	t.Helper()
	kv, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return kv
}

func mustNotExist(t *testing.T, s store.Store, key string) {
	t.Helper()
	if kv, err := s.Get(ctx(t), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get %s = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

func keys(kvs []store.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func testGetNotFound(t *testing.T, s store.Store) {
	mustNotExist(t, s, "/nope")
	r := put(t, s, "/nope/child", "v")
	mustNotExist(t, s, "/nope") // a prefix of a key is not a key
	kv := get(t, s, "/nope/child")
	if kv.Key != "/nope/child" || string(kv.Value) != "v" || kv.CreateRev != r || kv.ModRev != r {
		t.Fatalf("Get = %+v, want value v at create=mod=%d", kv, r)
	}
	del(t, s, "/nope/child")
	mustNotExist(t, s, "/nope/child")
}

func testRevisions(t *testing.T, s store.Store) {
	r0 := rev(t, s)
	r1 := put(t, s, "/a", "1")
	if r1 != r0+1 {
		t.Fatalf("first write: revision %d after %d, want +1", r1, r0)
	}
	r2 := txn(t, s, store.Txn{Ops: []store.Op{
		store.Put("/a", []byte("2")), store.Put("/b", []byte("1")), store.Put("/c", []byte("1"))}})
	if r2 != r1+1 {
		t.Fatalf("a txn of 3 puts moved the revision from %d to %d, want +1", r1, r2)
	}
	a := get(t, s, "/a")
	if string(a.Value) != "2" || a.CreateRev != r1 || a.ModRev != r2 {
		t.Fatalf("/a = %+v, want value 2, CreateRev %d (kept on update), ModRev %d", a, r1, r2)
	}
	for _, k := range []string{"/b", "/c"} {
		if kv := get(t, s, k); kv.CreateRev != r2 || kv.ModRev != r2 {
			t.Fatalf("%s = %+v, want CreateRev = ModRev = %d", k, kv, r2)
		}
	}
	if cur := rev(t, s); cur != r2 {
		t.Fatalf("Rev = %d, want %d", cur, r2)
	}
	r3 := del(t, s, "/c")
	if r3 != r2+1 || rev(t, s) != r3 {
		t.Fatalf("delete: revision %d (Rev %d), want %d", r3, rev(t, s), r2+1)
	}
	if kv := get(t, s, "/b"); kv.ModRev != r2 {
		t.Fatalf("/b ModRev moved to %d by a write to another key", kv.ModRev)
	}
}

func testDeleteAndRecreate(t *testing.T, s store.Store) {
	r1 := put(t, s, "/d", "1")
	put(t, s, "/d", "2")
	rd := del(t, s, "/d")
	mustNotExist(t, s, "/d")
	r := put(t, s, "/d", "3")
	kv := get(t, s, "/d")
	if r != rd+1 || kv.CreateRev != r || kv.ModRev != r || string(kv.Value) != "3" {
		t.Fatalf("recreated /d = %+v (txn rev %d), want CreateRev = ModRev = %d, not the old %d", kv, r, rd+1, r1)
	}
}

func testDeleteMissing(t *testing.T, s store.Store) {
	r := put(t, s, "/x", "1")
	got, err := s.Txn(ctx(t), store.Txn{Ops: []store.Op{store.Delete("/missing")}})
	if err != nil {
		t.Fatalf("delete of a missing key: %v, want no error", err)
	}
	// Nothing changed, so no revision was made.
	if got != r || rev(t, s) != r {
		t.Fatalf("delete of a missing key returned %d (Rev %d), want the current %d", got, rev(t, s), r)
	}
	r2 := txn(t, s, store.Txn{Ops: []store.Op{store.Delete("/missing"), store.Put("/x", []byte("2"))}})
	if r2 != r+1 || get(t, s, "/x").ModRev != r2 {
		t.Fatalf("txn with a missing delete and a put: rev %d, want %d", r2, r+1)
	}
}

func testListSortedPrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"/p/c", "/p/a/b", "/q/x", "/p/B", "/p/a", "/pz", "/p", "/p/b", "/p/\u00e9"} {
		put(t, s, k, "v"+k)
	}
	kvs, r, err := s.List(ctx(t), "/p/")
	if err != nil {
		t.Fatal(err)
	}
	// Byte order: upper case before lower case, a key before its children.
	want := "[/p/B /p/a /p/a/b /p/b /p/c /p/\u00e9]"
	if got := fmt.Sprint(keys(kvs)); got != want {
		t.Fatalf("List /p/ = %v, want %v", got, want)
	}
	for _, kv := range kvs {
		if string(kv.Value) != "v"+kv.Key || kv.ModRev == 0 || kv.CreateRev != kv.ModRev || kv.ModRev > r {
			t.Fatalf("listed %+v at rev %d", kv, r)
		}
	}
	if cur := rev(t, s); r != cur {
		t.Fatalf("List rev %d, current %d", r, cur)
	}
	kvs, r2, err := s.List(ctx(t), "/none/")
	if err != nil || len(kvs) != 0 || r2 != r {
		t.Fatalf("List of an empty prefix = %v, %d, %v; want nothing at rev %d", keys(kvs), r2, err, r)
	}
	all, _, err := s.List(ctx(t), "")
	if err != nil || len(all) != 9 {
		t.Fatalf("List \"\" = %v, %v; want all 9 keys", keys(all), err)
	}
}

// testListConsistentRev lists while another goroutine writes: each
// listing holds exactly the writes up to the revision it reports.
func testListConsistentRev(t *testing.T, s store.Store) {
	const writes = 200
	base := rev(t, s)
	c := ctx(t)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < writes; i++ {
			if _, err := s.Txn(c, store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/s/%04d", i), []byte("v"))}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	check := func() int64 {
		kvs, r, err := s.List(c, "/s/")
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(kvs)) != r-base {
			t.Fatalf("List at rev %d has %d keys, want %d (the writes up to that revision)", r, len(kvs), r-base)
		}
		for i, kv := range kvs {
			if kv.Key != fmt.Sprintf("/s/%04d", i) || kv.ModRev != base+int64(i)+1 {
				t.Fatalf("List at rev %d: item %d is %s at %d", r, i, kv.Key, kv.ModRev)
			}
		}
		return r
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if r := check(); r != base+writes {
				t.Fatalf("final List at rev %d, want %d", r, base+writes)
			}
			return
		default:
			check()
		}
	}
}

func testTxnAtomic(t *testing.T, s store.Store) {
	r := put(t, s, "/x", "1")
	put(t, s, "/z", "1")
	before := rev(t, s)
	_, err := s.Txn(ctx(t), store.Txn{
		Compares: []store.Compare{{Key: "/x", ModRev: r}, {Key: "/z", ModRev: r}}, // the second is stale
		Ops:      []store.Op{store.Put("/x", []byte("2")), store.Put("/y", []byte("2")), store.Delete("/z")}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("txn with one failing compare: %v, want ErrConflict", err)
	}
	if kv := get(t, s, "/x"); string(kv.Value) != "1" || kv.ModRev != r {
		t.Fatalf("a failed txn wrote /x: %+v", kv)
	}
	mustNotExist(t, s, "/y")
	get(t, s, "/z")
	if cur := rev(t, s); cur != before {
		t.Fatalf("a failed txn moved the revision from %d to %d", before, cur)
	}
	r2 := txn(t, s, store.Txn{
		Compares: []store.Compare{{Key: "/x", ModRev: r}, {Key: "/y", ModRev: 0}},
		Ops:      []store.Op{store.Put("/x", []byte("2")), store.Put("/y", []byte("2")), store.Delete("/z")}})
	if r2 != before+1 {
		t.Fatalf("txn rev %d, want %d", r2, before+1)
	}
	for _, k := range []string{"/x", "/y"} {
		if kv := get(t, s, k); kv.ModRev != r2 || string(kv.Value) != "2" {
			t.Fatalf("%s = %+v, want value 2 at %d (one revision per txn)", k, kv, r2)
		}
	}
	mustNotExist(t, s, "/z")
}

// testTxnOpsInOrder checks the final state when a txn touches a key more
// than once: ops apply in order.
func testTxnOpsInOrder(t *testing.T, s store.Store) {
	old := put(t, s, "/recreated", "old")
	r := txn(t, s, store.Txn{Ops: []store.Op{
		store.Put("/twice", []byte("1")), store.Put("/twice", []byte("2")),
		store.Put("/gone", []byte("1")), store.Delete("/gone"),
		store.Delete("/recreated"), store.Put("/recreated", []byte("new")),
	}})
	if kv := get(t, s, "/twice"); string(kv.Value) != "2" || kv.CreateRev != r || kv.ModRev != r {
		t.Fatalf("/twice = %+v, want the last put, at %d", kv, r)
	}
	mustNotExist(t, s, "/gone")
	if kv := get(t, s, "/recreated"); string(kv.Value) != "new" || kv.CreateRev != r || kv.ModRev != r {
		t.Fatalf("/recreated = %+v, want new with CreateRev %d (was %d before the delete)", kv, r, old)
	}
}

func testCompareModRev(t *testing.T, s store.Store) {
	create := store.Txn{Compares: []store.Compare{{Key: "/once", ModRev: 0}}, Ops: []store.Op{store.Put("/once", []byte("v"))}}
	r1 := txn(t, s, create)
	if _, err := s.Txn(ctx(t), create); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create of an existing key: %v, want ErrConflict", err)
	}
	cas := func(mod int64, val string) (int64, error) {
		return s.Txn(ctx(t), store.Txn{Compares: []store.Compare{{Key: "/once", ModRev: mod}}, Ops: []store.Op{store.Put("/once", []byte(val))}})
	}
	r2, err := cas(r1, "2")
	if err != nil {
		t.Fatalf("CAS at the current ModRev: %v", err)
	}
	if _, err := cas(r1, "stale"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CAS at a stale ModRev: %v, want ErrConflict", err)
	}
	if _, err := cas(r2+1, "future"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CAS at a future ModRev: %v, want ErrConflict", err)
	}
	if kv := get(t, s, "/once"); string(kv.Value) != "2" {
		t.Fatalf("/once = %q after failed CAS, want 2", kv.Value)
	}
	del(t, s, "/once")
	if _, err := cas(r2, "after-delete"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CAS on a deleted key at its old ModRev: %v, want ErrConflict", err)
	}
	txn(t, s, create) // ModRev 0 holds again once the key is gone
}

func testEmptyTxn(t *testing.T, s store.Store) {
	if got, err := s.Txn(ctx(t), store.Txn{}); err != nil || got != rev(t, s) {
		t.Fatalf("empty txn on a new store: %d, %v; want the current revision %d", got, err, rev(t, s))
	}
	r := put(t, s, "/e", "1")
	got, err := s.Txn(ctx(t), store.Txn{Compares: []store.Compare{{Key: "/e", ModRev: r}, {Key: "/none", ModRev: 0}}})
	if err != nil || got != r {
		t.Fatalf("compare-only txn: %d, %v; want %d", got, err, r)
	}
	if _, err := s.Txn(ctx(t), store.Txn{Compares: []store.Compare{{Key: "/e", ModRev: 0}}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("compare-only txn with a failing compare: %v, want ErrConflict", err)
	}
	if cur := rev(t, s); cur != r {
		t.Fatalf("empty txns moved the revision from %d to %d", r, cur)
	}
}

func testClose(t *testing.T, s store.Store) {
	put(t, s, "/k", "v")
	ch, err := s.Watch(ctx(t), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	drainUntilClosed(t, ch)
	c := ctx(t)
	if _, err := s.Get(c, "/k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.List(c, "/"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Txn(c, store.Txn{Ops: []store.Op{store.Put("/k", nil)}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Txn after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Watch(c, "/", 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Rev(c); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Rev after Close: %v, want ErrClosed", err)
	}
	_ = s.Close() // a second Close must not panic or hang
}
