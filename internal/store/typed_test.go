package store_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// counted is a bolt store that counts the reads and writes made through it.
type counted struct {
	store.Store
	gets, txns atomic.Int64
}

func (c *counted) Get(ctx context.Context, key string) (store.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *counted) Txn(ctx context.Context, t store.Txn) (int64, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, t)
}

func (c *counted) calls() (gets, txns int64) { return c.gets.Swap(0), c.txns.Swap(0) }

type doc struct {
	N    int
	Note string
}

const key = "/docs/a"

// newCounted opens a bolt store holding doc{N: 1} at key, and returns it
// with that object.
func newCounted(t *testing.T) (*counted, store.Object[doc]) {
	t.Helper()
	b := bolttest.Open(t)
	rev, err := store.PutJSON(context.Background(), b, key, doc{N: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &counted{Store: b}, store.Object[doc]{Value: doc{N: 1}, ModRev: rev}
}

func inc(d *doc) error { d.N++; return nil }

// expectStored fails unless key holds want at revision rev.
func expectStored(t *testing.T, s store.Store, want doc, rev int64) {
	t.Helper()
	o, err := store.GetJSON[doc](context.Background(), s, key)
	if err != nil || o.Value != want || o.ModRev != rev {
		t.Fatalf("stored %+v at %d (%v), want %+v at %d", o.Value, o.ModRev, err, want, rev)
	}
}

// TestUpdateKnownWritesOnce: with the object current, one Txn and no read,
// and the result chains into the next update.
func TestUpdateKnownWritesOnce(t *testing.T) {
	s, known := newCounted(t)
	ctx := context.Background()
	for want := 2; want <= 3; want++ {
		o, err := store.UpdateKnown(ctx, s, key, &known, inc)
		if err != nil {
			t.Fatal(err)
		}
		if gets, txns := s.calls(); gets != 0 || txns != 1 {
			t.Fatalf("update %d: %d reads and %d writes, want 0 and 1", want, gets, txns)
		}
		expectStored(t, s.Store, doc{N: want}, o.ModRev)
		if o.Value.N != want {
			t.Fatalf("returned %+v", o.Value)
		}
		known = o
	}
}

// TestUpdateKnownFallsBackOnConflict: a stale object costs a failed Txn,
// a read and a retry; the other writer's change is kept, mutate applies to
// what was read, and *known is what was read.
func TestUpdateKnownFallsBackOnConflict(t *testing.T) {
	s, known := newCounted(t)
	ctx := context.Background()
	other, err := store.PutJSON(ctx, s.Store, key, doc{N: 10, Note: "other"}, known.ModRev)
	if err != nil {
		t.Fatal(err)
	}
	o, err := store.UpdateKnown(ctx, s, key, &known, inc)
	if err != nil {
		t.Fatal(err)
	}
	if gets, txns := s.calls(); gets != 1 || txns != 2 {
		t.Fatalf("%d reads and %d writes, want 1 and 2", gets, txns)
	}
	expectStored(t, s.Store, doc{N: 11, Note: "other"}, o.ModRev)
	if known.ModRev != other || known.Value.N != 10 {
		t.Fatalf("known %+v, want the object re-read at %d", known, other)
	}
}

// TestUpdateKnownWithoutObjectReads: nil or a zero object reads first, as
// Update does.
func TestUpdateKnownWithoutObjectReads(t *testing.T) {
	s, _ := newCounted(t)
	ctx := context.Background()
	o, err := store.UpdateKnown(ctx, s, key, nil, inc)
	if err != nil {
		t.Fatal(err)
	}
	var zero store.Object[doc]
	o, err = store.UpdateKnown(ctx, s, key, &zero, inc)
	if err != nil {
		t.Fatal(err)
	}
	if gets, txns := s.calls(); gets != 2 || txns != 2 {
		t.Fatalf("%d reads and %d writes, want 2 and 2", gets, txns)
	}
	expectStored(t, s.Store, doc{N: 3}, o.ModRev)
	if zero.Value.N != 2 {
		t.Fatalf("known %+v, want the object read", zero)
	}
}

func TestUpdateKnownOfDeletedKey(t *testing.T) {
	s, known := newCounted(t)
	ctx := context.Background()
	if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(key)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateKnown(ctx, s, key, &known, inc); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err %v, want ErrNotFound", err)
	}
}

// TestUpdateKnownCommitsExtraOps: extra ops share the write's revision.
func TestUpdateKnownCommitsExtraOps(t *testing.T) {
	s, known := newCounted(t)
	ctx := context.Background()
	o, err := store.UpdateKnown(ctx, s, key, &known, inc, store.Put("/events/1", []byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.Get(ctx, "/events/1")
	if err != nil || ev.ModRev != o.ModRev {
		t.Fatalf("event at %d (%v), want %d", ev.ModRev, err, o.ModRev)
	}
}

func TestUpdateKnownSkip(t *testing.T) {
	s, known := newCounted(t)
	o, err := store.UpdateKnown(context.Background(), s, key, &known, func(d *doc) error { d.Note = "seen"; return store.ErrSkip })
	if want := (store.Object[doc]{Value: doc{N: 1, Note: "seen"}, ModRev: known.ModRev}); err != nil || o != want {
		t.Fatalf("%+v %v, want %+v", o, err, want)
	}
	if _, txns := s.calls(); txns != 0 {
		t.Fatalf("%d writes, want none", txns)
	}
}
