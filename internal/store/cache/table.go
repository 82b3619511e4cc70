package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/berth-dev/berth/internal/store"
)

// Table holds the keys under one prefix, decoded as T.
type Table[T any] struct {
	feed *feed

	mu      sync.Mutex
	entries map[string]*entry[T]
	sorted  []string // keys in order; nil when the key set changed
	rev     int64    // the revision of the last change applied (or of the load)
}

// entry is one key: its stored bytes until decoded, then the object.
type entry[T any] struct {
	kv  store.KV
	obj *store.Object[T]
	err error // why kv does not decode
}

// Register adds a table of the keys under prefix to c.
func Register[T any](c *Cache, prefix string) *Table[T] {
	t := &Table[T]{entries: map[string]*entry[T]{}}
	t.feed = newFeed(c, prefix, t)
	c.add(t.feed)
	return t
}

func (t *Table[T]) load(kvs []store.KV, rev int64) {
	entries := make(map[string]*entry[T], len(kvs))
	for _, kv := range kvs {
		entries[kv.Key] = &entry[T]{kv: kv}
	}
	t.mu.Lock()
	t.entries, t.sorted, t.rev = entries, nil, rev
	t.mu.Unlock()
}

// apply records one revision's changes at once; an event older than
// what the table holds (replayed after a reload) changes nothing.
func (t *Table[T]) apply(evs []store.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ev := range evs {
		t.rev = max(t.rev, ev.KV.ModRev)
		cur, ok := t.entries[ev.KV.Key]
		if ok && cur.kv.ModRev > ev.KV.ModRev {
			continue
		}
		switch {
		case ev.Type == store.EventDelete && ok:
			delete(t.entries, ev.KV.Key)
			t.sorted = nil
		case ev.Type == store.EventPut:
			if !ok {
				t.sorted = nil
			}
			t.entries[ev.KV.Key] = &entry[T]{kv: ev.KV}
		}
	}
}

// List returns every object under the prefix in key order, as fresh as a
// List of the store. The objects are shared: do not modify them.
func (t *Table[T]) List(ctx context.Context) ([]*store.Object[T], error) {
	objs, _, _, err := t.list(ctx, false)
	return objs, err
}

// ListKV is List as the store answers it: the keys whose object keep
// accepts, with their revisions and their values encoded again, and a
// revision the listing is consistent with, to watch from.
func (t *Table[T]) ListKV(ctx context.Context, keep func(*T) bool) ([]store.KV, int64, error) {
	objs, kvs, rev, err := t.list(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	var out []store.KV
	for i, o := range objs {
		if !keep(&o.Value) {
			continue
		}
		b, err := json.Marshal(o.Value)
		if err != nil {
			return nil, 0, err
		}
		kv := kvs[i]
		kv.Value = b
		out = append(out, kv)
	}
	return out, rev, nil
}

// list syncs and returns every object in key order, with withKVs its key
// and revisions (kv without the value), and the revision the table stood at:
// it holds every change up to the sync and none half applied, so it is
// exactly the store's state at the later of the sync and its last change.
func (t *Table[T]) list(ctx context.Context, withKVs bool) ([]*store.Object[T], []store.KV, int64, error) {
	synced, err := t.feed.sync(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	t.mu.Lock()
	if t.sorted == nil {
		t.sorted = make([]string, 0, len(t.entries))
		for k := range t.entries {
			t.sorted = append(t.sorted, k)
		}
		sort.Strings(t.sorted)
	}
	out := make([]*store.Object[T], len(t.sorted))
	var kvs []store.KV
	if withKVs {
		kvs = make([]store.KV, len(t.sorted))
	}
	var todo []int // indexes of entries still to decode
	es := make([]*entry[T], len(t.sorted))
	for i, k := range t.sorted {
		e := t.entries[k]
		es[i], out[i] = e, e.obj
		if withKVs {
			kvs[i] = store.KV{Key: e.kv.Key, CreateRev: e.kv.CreateRev, ModRev: e.kv.ModRev}
		}
		if e.obj == nil {
			todo = append(todo, i)
		}
	}
	rev := max(synced, t.rev)
	t.mu.Unlock()
	for _, i := range todo {
		o, err := t.decode(es[i])
		if err != nil {
			return nil, nil, 0, err
		}
		out[i] = o
	}
	return out, kvs, rev, nil
}

// Len is how many keys the table holds, without waiting for the store:
// a figure for sizing, not for decisions that need the latest state.
func (t *Table[T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Values is List without revisions: the values, shared (do not modify).
func (t *Table[T]) Values(ctx context.Context) ([]*T, error) {
	objs, err := t.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*T, len(objs))
	for i, o := range objs {
		out[i] = &o.Value
	}
	return out, nil
}

// Get returns one object, as fresh as a Get of the store, or
// store.ErrNotFound. The object is shared: do not modify it.
func (t *Table[T]) Get(ctx context.Context, key string) (*store.Object[T], error) {
	if _, err := t.feed.sync(ctx); err != nil {
		return nil, err
	}
	t.mu.Lock()
	e, ok := t.entries[key]
	t.mu.Unlock()
	if !ok {
		return nil, store.ErrNotFound
	}
	return t.decode(e)
}

// decode returns e's object, decoding it on first use. Entries are
// replaced, never changed, once published, so decoding outside the
// table's lock races with nobody but other decoders of the same entry,
// which agree.
func (t *Table[T]) decode(e *entry[T]) (*store.Object[T], error) {
	t.mu.Lock()
	o, err := e.obj, e.err
	kv := e.kv
	t.mu.Unlock()
	if o != nil || err != nil {
		return o, err
	}
	o = &store.Object[T]{ModRev: kv.ModRev}
	if err := json.Unmarshal(kv.Value, &o.Value); err != nil {
		err = fmt.Errorf("store: decode %s: %w", kv.Key, err)
		t.mu.Lock()
		e.err = err
		t.mu.Unlock()
		return nil, err
	}
	t.mu.Lock()
	e.obj, e.kv.Value = o, nil // the bytes are not needed any more
	t.mu.Unlock()
	return o, nil
}
