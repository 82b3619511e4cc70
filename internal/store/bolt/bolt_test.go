package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/storetest"
)

func open(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "berth.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *Store, key, val string) int64 {
	t.Helper()
	rev, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(key, []byte(val))}})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return rev
}

func curRev(t testing.TB, s *Store) int64 {
	t.Helper()
	r, err := s.Rev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConformance(t *testing.T) {
	const history = 1000
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, Options{HistoryRevisions: history}) },
		storetest.WithCompaction(history))
}

// closedStoreWithTwoRevisions writes /k twice (v1, v2) to a new store
// file and closes it; it returns the file and the two revisions.
func closedStoreWithTwoRevisions(t *testing.T) (path string, r1, r2 int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1 = put(t, s, "/k", "v1")
	r2 = put(t, s, "/k", "v2")
	s.Close()
	return path, r1, r2
}

func TestReopenKeepsDataAndHistory(t *testing.T) {
	p, r1, r2 := closedStoreWithTwoRevisions(t)
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Get(context.Background(), "/k")
	if err != nil || string(kv.Value) != "v2" || kv.CreateRev != r1 || kv.ModRev != r2 {
		t.Fatalf("after reopen: %+v %v", kv, err)
	}
	if cur := curRev(t, s); cur != r2 {
		t.Fatalf("revision %d after reopen, want %d", cur, r2)
	}
	ch, err := s.Watch(context.Background(), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"v1", "v2"} {
		if e := <-ch; string(e.KV.Value) != want {
			t.Fatalf("replay after reopen: %+v, want value %s", e, want)
		}
	}
	if r := put(t, s, "/k", "v3"); r != r2+1 {
		t.Fatalf("first write after reopen at %d, want %d", r, r2+1)
	}
}

func TestCompactionKeepsExactlyHistoryRevisions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(p, Options{HistoryRevisions: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		put(t, s, "/k", fmt.Sprint(i))
	}
	check := func(history int64) {
		t.Helper()
		cur := curRev(t, s)
		if _, err := s.Watch(context.Background(), "/", cur-history-1); !errors.Is(err, store.ErrCompacted) {
			t.Fatalf("history %d: Watch after %d: %v, want ErrCompacted", history, cur-history-1, err)
		}
		ch, err := s.Watch(context.Background(), "/", cur-history)
		if err != nil {
			t.Fatalf("history %d: Watch after %d: %v", history, cur-history, err)
		}
		if e := <-ch; e.KV.ModRev != cur-history+1 {
			t.Fatalf("history %d: first replayed event at %d, want %d", history, e.KV.ModRev, cur-history+1)
		}
	}
	check(10)
	s.Close()

	// A smaller window applies from the next commit on.
	if s, err = Open(p, Options{HistoryRevisions: 5}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "/k", "after reopen")
	check(5)
}

func TestSlowWatcherIsDroppedNotWaitedFor(t *testing.T) {
	s := open(t, Options{WatchBuffer: 4})
	ctx := context.Background()
	slow, err := s.Watch(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Watch(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for i := 0; i < 10; i++ {
		r := put(t, s, "/k", "v") // never blocks on the slow watcher
		e := <-fast
		got = append(got, e.KV.ModRev)
		if e.KV.ModRev != r {
			t.Fatalf("fast watcher got %d, want %d", e.KV.ModRev, r)
		}
	}
	var slowGot []int64
	for e := range slow {
		slowGot = append(slowGot, e.KV.ModRev)
	}
	if fmt.Sprint(slowGot) != fmt.Sprint(got[:4]) {
		t.Fatalf("slow watcher got %v before being dropped, want the first 4 of %v", slowGot, got)
	}
	s.mu.Lock()
	n := len(s.watchers)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d watchers registered, want 1 (the slow one is gone)", n)
	}
}

// A watcher is dropped between revisions, never inside one: what it got
// is whole revisions, and resuming after the last one it got misses
// nothing, even of a revision larger than its buffer.
func TestDroppedWatchEndsBetweenRevisions(t *testing.T) {
	s := open(t, Options{WatchBuffer: 5})
	ctx := context.Background()
	slow, err := s.Watch(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	txn := func(n int) int64 {
		var tx store.Txn
		for i := 0; i < n; i++ {
			tx.Ops = append(tx.Ops, store.Put(fmt.Sprintf("/k%d", i), []byte("v")))
		}
		r, err := s.Txn(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := txn(3) // fits
	txn(3)       // does not fit behind r1's 3: dropped before any of it
	r3 := txn(8) // larger than the buffer
	perRev := map[int64]int{}
	var last int64
	for e := range slow {
		perRev[e.KV.ModRev]++
		last = e.KV.ModRev
	}
	if fmt.Sprint(perRev) != fmt.Sprintf("map[%d:3]", r1) {
		t.Fatalf("dropped watch delivered %v, want revision %d whole (3 events) and nothing more", perRev, r1)
	}
	resumed, err := s.Watch(ctx, "/", last)
	if err != nil {
		t.Fatal(err)
	}
	perRev = map[int64]int{}
	timeout := time.After(10 * time.Second)
	for len(perRev) < 2 || perRev[r3] < 8 {
		select {
		case e := <-resumed:
			perRev[e.KV.ModRev]++
		case <-timeout:
			t.Fatalf("resumed watch delivered only %v", perRev)
		}
	}
	if fmt.Sprint(perRev) != fmt.Sprintf("map[%d:3 %d:8]", r1+1, r3) {
		t.Fatalf("resumed watch delivered %v, want revisions %d (3) and %d (8)", perRev, r1+1, r3)
	}
}

func TestWatchCancelUnregisters(t *testing.T) {
	s := open(t, Options{})
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := s.Watch(ctx, "/", 0)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		for range ch {
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.watchers) != 0 {
		t.Fatalf("%d watchers left after cancelling all", len(s.watchers))
	}
}

func TestWatchNegativeRevision(t *testing.T) {
	s := open(t, Options{})
	if _, err := s.Watch(context.Background(), "/", -1); err == nil {
		t.Fatal("Watch after -1 succeeded")
	}
}

func TestInvalidOpsWriteNothing(t *testing.T) {
	s := open(t, Options{})
	r := put(t, s, "/a", "1")
	for _, bad := range []store.Txn{
		{Ops: []store.Op{store.Put("/b", []byte("1")), store.Put("", []byte("empty key"))}},
		{Ops: []store.Op{store.Put("/b", []byte("1")), {Type: 99, Key: "/c"}}},
		{Ops: []store.Op{store.Put(string(make([]byte, 40000)), nil)}},
	} {
		if _, err := s.Txn(context.Background(), bad); err == nil {
			t.Fatalf("Txn %v succeeded", bad.Ops[1:])
		}
	}
	if _, err := s.Get(context.Background(), "/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused txn wrote /b: %v", err)
	}
	if cur := curRev(t, s); cur != r {
		t.Fatalf("refused txns moved the revision to %d", cur)
	}
}

// TestBatchIsolatesAFailingTxn commits a batch in which one Txn fails
// halfway (bypassing validation): the others commit under consecutive
// revisions and nothing of the failing one remains.
func TestBatchIsolatesAFailingTxn(t *testing.T) {
	s := open(t, Options{})
	base := put(t, s, "/seed", "v")
	mk := func(ops ...store.Op) *request {
		return &request{txn: store.Txn{Ops: ops}, done: make(chan result, 1)}
	}
	batch := []*request{
		mk(store.Put("/a", []byte("a"))),
		mk(store.Put("/half", []byte("x")), store.Op{Type: 99, Key: "/bad"}),
		{txn: store.Txn{Compares: []store.Compare{{Key: "/seed", ModRev: 0}}, Ops: []store.Op{store.Put("/conflict", nil)}}, done: make(chan result, 1)},
		mk(store.Put("/b", []byte("b"))),
	}
	s.commit(batch)
	res := make([]result, len(batch))
	for i, r := range batch {
		res[i] = <-r.done
	}
	if res[0].err != nil || res[0].rev != base+1 || res[3].err != nil || res[3].rev != base+2 {
		t.Fatalf("good txns: %+v, %+v; want revisions %d and %d", res[0], res[3], base+1, base+2)
	}
	if res[1].err == nil || !errors.Is(res[2].err, store.ErrConflict) {
		t.Fatalf("bad txn: %+v, conflicting txn: %+v", res[1], res[2])
	}
	for _, k := range []string{"/half", "/conflict"} {
		if _, err := s.Get(context.Background(), k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s was written by a failed txn", k)
		}
	}
	if cur := curRev(t, s); cur != base+2 {
		t.Fatalf("revision %d, want %d", cur, base+2)
	}
}

// TestConcurrentTxnsGetConsecutiveRevisions: group commit must still give
// every writing Txn its own revision, with none skipped.
func TestConcurrentTxnsGetConsecutiveRevisions(t *testing.T) {
	s := open(t, Options{})
	const workers, each = 16, 20
	var mu sync.Mutex
	var revs []int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/w/%d/%d", w, i), nil)}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				revs = append(revs, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for i, r := range revs {
		if r != int64(i)+1 {
			t.Fatalf("revisions %v: position %d is %d", revs, i, r)
		}
	}
}

// TestCloseDuringWrites: every Txn racing Close either commits (and is
// there after reopening) or fails with ErrClosed.
func TestCloseDuringWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("/c/%d/%d", w, i)
				_, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(k, nil)}})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}()
	}
	ch, err := s.Watch(context.Background(), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	<-ch // some writes are in
	<-ch
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for range ch {
	}
	s, err = Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range acked {
		if _, err := s.Get(context.Background(), k); err != nil {
			t.Fatalf("acknowledged %s missing after Close: %v", k, err)
		}
	}
	if cur := curRev(t, s); cur != int64(len(acked)) {
		t.Fatalf("revision %d after %d acknowledged writes", cur, len(acked))
	}
}

func TestTxnWithCancelledContextWritesNothing(t *testing.T) {
	s := open(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{store.Put("/k", nil)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Txn with a cancelled context: %v", err)
	}
	if _, err := s.Get(context.Background(), "/k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a cancelled Txn wrote")
	}
}
