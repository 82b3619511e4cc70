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
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return s.Txn(ctx, Txn{Compares: []Compare{{Key: key, ModRev: modRev}}, Ops: []Op{Put(key, b)}})
}

// ErrSkip, returned by an Update mutate function, ends the update without
// writing and without error.
var ErrSkip = errors.New("store: skip update")

// Update reads key, applies mutate and writes the result with
// compare-and-swap, retrying on conflict. mutate may be called more than
// once. It returns ErrNotFound if the key does not exist.
func Update[T any](ctx context.Context, s Store, key string, mutate func(*T) error) (T, error) {
	for {
		o, err := GetJSON[T](ctx, s, key)
		if err != nil {
			var zero T
			return zero, err
		}
		if err := mutate(&o.Value); err != nil {
			if errors.Is(err, ErrSkip) {
				return o.Value, nil
			}
			return o.Value, err
		}
		if _, err := PutJSON(ctx, s, key, o.Value, o.ModRev); err != nil {
			if errors.Is(err, ErrConflict) {
				if ctx.Err() != nil {
					return o.Value, ctx.Err()
				}
				continue
			}
			return o.Value, err
		}
		return o.Value, nil
	}
}
