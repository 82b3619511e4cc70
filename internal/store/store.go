// Package store defines berth's storage seam: a revisioned key-value store
// with compare-and-swap transactions and watch-from-revision. Every backend
// (bolt, etcd) passes the storetest conformance suite.
//
// Revisions: the store has one global revision counter. Every successful
// Txn that writes anything increments it by exactly one; every key written
// by that Txn gets ModRev equal to the new revision. A key's CreateRev is the
// revision that created it (reset when it is deleted and put again).
package store

import (
	"context"
	"errors"
)

// Errors returned by every backend.
var (
	// ErrNotFound: Get of a key that does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict: a Txn comparison failed; nothing was written.
	ErrConflict = errors.New("store: conflict, object changed since it was read")
	// ErrCompacted: Watch from a revision older than the retained history.
	ErrCompacted = errors.New("store: requested revision has been compacted")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// KV is one stored key.
type KV struct {
	Key       string
	Value     []byte
	CreateRev int64
	ModRev    int64
}

// OpType says what an Op does.
type OpType int

// Op types.
const (
	OpPut OpType = iota + 1
	OpDelete
)

// Op is one write in a Txn. Deleting a missing key is not an error.
type Op struct {
	Type  OpType
	Key   string
	Value []byte
}

// Put makes a put Op.
func Put(key string, value []byte) Op { return Op{Type: OpPut, Key: key, Value: value} }

// Delete makes a delete Op.
func Delete(key string) Op { return Op{Type: OpDelete, Key: key} }

// Compare is a Txn precondition: key's ModRev must equal ModRev. ModRev 0
// means the key must not exist.
type Compare struct {
	Key    string
	ModRev int64
}

// Txn is applied atomically: if every Compare holds, every Op is applied
// in order under one new revision; otherwise nothing is and ErrConflict is
// returned.
type Txn struct {
	Compares []Compare
	Ops      []Op
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watcher. For deletes KV.Value is nil and
// KV.ModRev is the revision of the delete.
type Event struct {
	Type EventType
	KV   KV
}

// Store is the storage seam. All methods are safe for concurrent use.
type Store interface {
	// Get returns one key or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the prefix, sorted by key, and the store
	// revision the listing is consistent with.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies t atomically and durably (it survives kill -9 once
	// returned) and returns the new revision; a Txn with no Ops returns the
	// current revision after checking its Compares.
	Txn(ctx context.Context, t Txn) (int64, error)
	// Watch streams every change to keys with the prefix made after
	// revision afterRev, in revision order, until ctx is done or the store
	// is closed (then the channel is closed). afterRev older than the
	// retained history yields ErrCompacted. A slow reader must not block
	// writers; a backend may drop a watcher that falls too far behind by
	// closing its channel, only between revisions: every revision a
	// watch delivered, it delivered whole, so the caller may watch again
	// after the last revision it received (or re-list).
	Watch(ctx context.Context, prefix string, afterRev int64) (<-chan Event, error)
	// Rev returns the current revision. For the embedded store, every
	// event of a revision it returns is already queued on every live
	// watcher (a remote store cannot promise that).
	Rev(ctx context.Context) (int64, error)
	// Close releases the store; pending watches end.
	Close() error
}
