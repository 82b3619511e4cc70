package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
	"github.com/berth-dev/berth/internal/store/cache"
)

type item struct {
	N int `json:"n"`
}

func put(t *testing.T, st store.Store, kv ...any) int64 {
	t.Helper()
	var txn store.Txn
	for i := 0; i < len(kv); i += 2 {
		b, _ := json.Marshal(kv[i+1])
		txn.Ops = append(txn.Ops, store.Put(kv[i].(string), b))
	}
	rev, err := st.Txn(context.Background(), txn)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func start(t *testing.T, st store.Store) (*cache.Cache, *cache.Table[item]) {
	t.Helper()
	c := cache.New(st, nil)
	items := cache.Register[item](c, "/items/")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(ctx)
	return c, items
}

func values(t *testing.T, tb *cache.Table[item]) map[string]int {
	t.Helper()
	objs, err := tb.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, o := range objs {
		out[fmt.Sprint(o.Value.N)]++
	}
	return out
}

// A read right after a write sees it, as a store read would: the cache
// never lags behind its reader's own writes.
func TestReadsSeeEveryWriteBeforeThem(t *testing.T) {
	st := bolttest.Open(t)
	put(t, st, "/items/a", item{1}, "/other/x", item{9})
	_, items := start(t, st)
	ctx := context.Background()
	for i := 2; i < 200; i++ {
		rev := put(t, st, "/items/a", item{i})
		o, err := items.Get(ctx, "/items/a")
		if err != nil {
			t.Fatal(err)
		}
		if o.Value.N != i || o.ModRev != rev {
			t.Fatalf("after writing %d at rev %d the cache has %d at rev %d", i, rev, o.Value.N, o.ModRev)
		}
	}
	if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete("/items/a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := items.Get(ctx, "/items/a"); err != store.ErrNotFound {
		t.Fatalf("deleted key: got %v, want ErrNotFound", err)
	}
	if got := values(t, items); len(got) != 0 {
		t.Fatalf("other prefixes leaked into the table: %v", got)
	}
}

// Concurrent readers never see half of a transaction: each Txn writes the
// same number under every key of a group, and every listing must show
// one number per group.
func TestListsSeeWholeTransactions(t *testing.T) {
	st := bolttest.Open(t)
	_, items := start(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const groups, keys, writes = 4, 8, 150
	var wg sync.WaitGroup
	for g := 0; g < groups; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 1; n <= writes && ctx.Err() == nil; n++ {
				var txn store.Txn
				for k := 0; k < keys; k++ {
					b, _ := json.Marshal(item{g*1000 + n})
					txn.Ops = append(txn.Ops, store.Put(fmt.Sprintf("/items/%d/%d", g, k), b))
				}
				if _, err := st.Txn(ctx, txn); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	var bad atomic.Int32
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for lists := 0; ; lists++ {
		objs, err := items.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]int{} // group → its number
		for _, o := range objs {
			g := o.Value.N / 1000
			if n, ok := seen[g]; ok && n != o.Value.N {
				bad.Add(1)
				t.Errorf("listing %d shows group %d at %d and %d", lists, g, n, o.Value.N)
			}
			seen[g] = o.Value.N
		}
		select {
		case <-done:
			if got := values(t, items); len(got) != groups {
				t.Fatalf("final listing %v, want one number per group", got)
			}
			return
		default:
		}
		if bad.Load() > 3 {
			t.FailNow()
		}
	}
}

// counting counts the watches a cache makes.
type counting struct {
	store.Store
	watches atomic.Int32
}

func (c *counting) Watch(ctx context.Context, prefix string, after int64) (<-chan store.Event, error) {
	c.watches.Add(1)
	return c.Store.Watch(ctx, prefix, after)
}

// A dropped watch resumes where it stopped and a compacted one reloads:
// no change is lost or applied out of order either way. A one-event
// watch buffer drops the cache at most multi-key Txns; a short history
// makes some resumes find their revision compacted.
func TestResumesAfterDroppedAndCompactedWatches(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{WatchBuffer: 1, HistoryRevisions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	cs := &counting{Store: bs}
	_, items := start(t, cs)
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		var kv []any // a Txn of several keys cannot fit a one-event buffer
		for k := 0; k < 6; k++ {
			kv = append(kv, fmt.Sprintf("/items/%02d", (i+k)%9), item{i*10 + k})
		}
		put(t, bs, kv...)
		if i%5 == 0 {
			if _, err := bs.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(fmt.Sprintf("/items/%02d", (i+3)%7))}}); err != nil {
				t.Fatal(err)
			}
		}
		if i%20 == 19 {
			checkSame(t, bs, items)
		}
	}
	checkSame(t, bs, items)
	if cs.watches.Load() < 2 {
		t.Fatalf("only %d watches: the test did not drop any", cs.watches.Load())
	}
}

func checkSame(t *testing.T, st store.Store, items *cache.Table[item]) {
	t.Helper()
	ctx := context.Background()
	want, _, err := store.ListJSON[item](ctx, st, "/items/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := items.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("cache has %d items, store %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Value != want[i].Value || got[i].ModRev != want[i].ModRev {
			t.Fatalf("item %d: cache %+v, store %+v", i, *got[i], want[i])
		}
	}
}

// A value that does not decode fails the read with its key named, and
// the store closing ends reads with ErrClosed instead of hanging.
func TestBadValuesAndClosedStore(t *testing.T) {
	st := bolttest.Open(t)
	if _, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put("/items/bad", []byte("{"))}}); err != nil {
		t.Fatal(err)
	}
	_, items := start(t, st)
	if _, err := items.List(context.Background()); err == nil || !strings.Contains(err.Error(), "/items/bad") {
		t.Fatalf("List of a bad value: %v, want an error naming the key", err)
	}
	st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := items.List(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("List after close: %v (ctx %v), want a prompt error", err, ctx.Err())
	}
}

// ListKV answers as a store List would: the same keys, revisions and
// values, and a revision to watch from that neither misses nor repeats a
// change.
func TestListKVMatchesTheStore(t *testing.T) {
	st := bolttest.Open(t)
	_, items := start(t, st)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		put(t, st, fmt.Sprintf("/items/%02d", i%6), item{i}, "/other/x", item{i})
	}
	kvs, rev, err := items.ListKV(ctx, func(it *item) bool { return it.N%2 == 0 })
	if err != nil {
		t.Fatal(err)
	}
	want, wantRev, err := st.List(ctx, "/items/")
	if err != nil {
		t.Fatal(err)
	}
	if rev != wantRev {
		t.Fatalf("ListKV at revision %d, the store's List at %d", rev, wantRev)
	}
	var kept []store.KV
	for _, kv := range want {
		var it item
		if json.Unmarshal(kv.Value, &it) == nil && it.N%2 == 0 {
			kept = append(kept, kv)
		}
	}
	if len(kvs) != len(kept) {
		t.Fatalf("ListKV kept %d keys, want %d", len(kvs), len(kept))
	}
	for i := range kept {
		got, exp := kvs[i], kept[i]
		if got.Key != exp.Key || got.ModRev != exp.ModRev || got.CreateRev != exp.CreateRev || string(got.Value) != string(exp.Value) {
			t.Fatalf("key %d: %+v, want %+v", i, got, exp)
		}
	}
	// A watch from the listing's revision sees the next change only.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := st.Watch(wctx, "/items/", rev)
	if err != nil {
		t.Fatal(err)
	}
	next := put(t, st, "/items/00", item{100})
	if ev := <-ch; ev.KV.ModRev != next {
		t.Fatalf("watch from the listing's revision saw revision %d first, want %d", ev.KV.ModRev, next)
	}
}
