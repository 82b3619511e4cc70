package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Object is a decoded value together with the revision it was read at, for
// compare-and-swap updates.
type Object[T any] struct {
	Value  T
	ModRev int64
}

// GetJSON reads and decodes one key.
func GetJSON[T any](ctx context.Context, s Store, key string) (Object[T], error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return Object[T]{}, err
	}
	var o Object[T]
	if err := json.Unmarshal(kv.Value, &o.Value); err != nil {
		return Object[T]{}, fmt.Errorf("store: decode %s: %w", key, err)
	}
	o.ModRev = kv.ModRev
	return o, nil
}

// ListJSON reads and decodes every key under prefix.
func ListJSON[T any](ctx context.Context, s Store, prefix string) ([]Object[T], int64, error) {
	kvs, rev, err := s.List(ctx, prefix)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Object[T], 0, len(kvs))
	for _, kv := range kvs {
		var o Object[T]
		if err := json.Unmarshal(kv.Value, &o.Value); err != nil {
			return nil, 0, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		o.ModRev = kv.ModRev
		out = append(out, o)
	}
	return out, rev, nil
}

// ListValues is ListJSON without revisions.
func ListValues[T any](ctx context.Context, s Store, prefix string) ([]T, error) {
	objs, _, err := ListJSON[T](ctx, s, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.Value
	}
	return out, nil
}

// PutJSON encodes v and puts it at key if the key's ModRev is still modRev
// (0: must not exist). It returns the new revision.
func PutJSON(ctx context.Context, s Store, key string, v any, modRev int64) (int64, error) {
	return putJSON(ctx, s, key, v, modRev, nil)
}

// putJSON is PutJSON committing extra ops in the same Txn.
func putJSON(ctx context.Context, s Store, key string, v any, modRev int64, extra []Op) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ops := append([]Op{Put(key, b)}, extra...)
	return s.Txn(ctx, Txn{Compares: []Compare{{Key: key, ModRev: modRev}}, Ops: ops})
}

// ErrSkip, returned by an Update mutate function, ends the update without
// writing and without error.
var ErrSkip = errors.New("store: skip update")

// Update reads key, applies mutate and writes the result with
// compare-and-swap, retrying on conflict. mutate may be called more than
// once. It returns ErrNotFound if the key does not exist.
func Update[T any](ctx context.Context, s Store, key string, mutate func(*T) error) (T, error) {
	o, err := UpdateKnown(ctx, s, key, nil, mutate)
	return o.Value, err
}

// UpdateKnown is Update for a caller that holds the object already (from
// a watch, or its own last write): it applies mutate to a copy of
// known.Value and writes the result with one Txn guarded by known.ModRev,
// without reading the key first. If the key changed since (ErrConflict),
// or known is nil or has ModRev 0, it reads the key, sets *known (when
// not nil) to what it read, and goes on as Update. extra ops are
// committed in the same Txn (an event explaining the change, say).
//
// It returns the object as written, with the revision of the write; on
// ErrSkip, the value as mutate left it, unwritten, with the revision it
// was based on. mutate gets a shallow copy: it must replace, not modify
// in place, the maps and slices it changes.
func UpdateKnown[T any](ctx context.Context, s Store, key string, known *Object[T], mutate func(*T) error, extra ...Op) (Object[T], error) {
	var base Object[T]
	if known != nil {
		base = *known
	}
	for {
		if base.ModRev == 0 {
			o, err := GetJSON[T](ctx, s, key)
			if err != nil {
				return Object[T]{}, err
			}
			base = o
			if known != nil {
				*known = o
			}
		}
		v := base.Value
		if err := mutate(&v); err != nil {
			if errors.Is(err, ErrSkip) {
				return Object[T]{Value: v, ModRev: base.ModRev}, nil
			}
			return Object[T]{Value: v}, err
		}
		rev, err := putJSON(ctx, s, key, v, base.ModRev, extra)
		switch {
		case err == nil:
			return Object[T]{Value: v, ModRev: rev}, nil
		case !errors.Is(err, ErrConflict):
			return Object[T]{Value: v}, err
		case ctx.Err() != nil:
			return Object[T]{Value: v}, ctx.Err()
		}
		base.ModRev = 0 // changed since: read it again
	}
}
