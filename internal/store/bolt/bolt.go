// Package bolt is berth's embedded store backend on bbolt: one file,
// every transaction fsynced before it is acknowledged, a change log for
// watch-from-revision, and the store.Store contract (see storetest).
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berth-dev/berth/internal/store"
)

var (
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
	keyFormat  = []byte("format")
)

const formatVersion = "berth-store-2"

// Options tune the backend.
type Options struct {
	// HistoryRevisions is how many revisions of change log are kept for
	// Watch (default 100,000); older ones yield store.ErrCompacted.
	HistoryRevisions int64
	// WatchBuffer is how many events a watcher may lag behind before it is
	// dropped (default 4096).
	WatchBuffer int
	// LockTimeout is how long Open waits for another process's lock
	// (default 1s).
	LockTimeout time.Duration
}

// Store is the bbolt backend.
type Store struct {
	db   *bbolt.DB
	opts Options
	path string

	mu       sync.Mutex // serializes commits with watcher registration and fan-out
	watchers map[*watcher]struct{}
	closed   bool
	done     chan struct{} // closed by Close
}

type watcher struct {
	prefix string
	ch     chan store.Event
}

// Records are stored as CreateRev and ModRev (8 bytes each, big endian)
// followed by the value, so List decodes without copying through JSON.
const recordHeader = 16

func encodeRecord(create, mod int64, value []byte) []byte {
	b := make([]byte, recordHeader+len(value))
	binary.BigEndian.PutUint64(b[0:8], uint64(create))
	binary.BigEndian.PutUint64(b[8:16], uint64(mod))
	copy(b[recordHeader:], value)
	return b
}

// logEntry is one change in the change log.
type logEntry struct {
	T store.EventType `json:"t"`
	K string          `json:"k"`
	V []byte          `json:"v,omitempty"`
	C int64           `json:"c,omitempty"`
}

// Open opens or creates the store file at path. A file that is not a
// berth store, is corrupt, or is locked by another process is an error
// that says so; Open never starts empty on a file it cannot read.
func Open(path string, opts Options) (s *Store, err error) {
	if opts.HistoryRevisions <= 0 {
		opts.HistoryRevisions = 100000
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = 4096
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, corrupt(path, fmt.Errorf("%v", r))
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: the store is in use by another berth process (stop it, or use another --data-dir)", path)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("open %s: permission denied: %w", path, err)
	case err != nil:
		return nil, corrupt(path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		db.Close()
		return nil, corrupt(path, err)
	}
	return &Store{db: db, opts: opts, path: path, watchers: map[*watcher]struct{}{}, done: make(chan struct{})}, nil
}

func corrupt(path string, cause error) error {
	return fmt.Errorf("open %s: data file is corrupt or not a berth store: %v (restore it from a backup or move it away; berth will not start empty over it)", path, cause)
}

// initBuckets creates the buckets of a new file and checks an old one.
func initBuckets(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if tx.Bucket(bucketKV) != nil || tx.Bucket(bucketLog) != nil {
			return errors.New("missing meta bucket")
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyRev, u64(0)); err != nil {
			return err
		}
	}
	if f := meta.Get(keyFormat); string(f) != formatVersion {
		return fmt.Errorf("unknown format %q", f)
	}
	if len(meta.Get(keyRev)) != 8 {
		return errors.New("bad revision counter")
	}
	for _, b := range [][]byte{bucketKV, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func u64(n int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}

func readRev(tx *bbolt.Tx) int64 {
	return int64(binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyRev)))
}

// decode copies a record out of bolt's memory map (valid only inside the
// transaction) into a KV.
func decode(k, v []byte) (store.KV, error) {
	if len(v) < recordHeader {
		return store.KV{}, fmt.Errorf("store: corrupt record %q: %d bytes", k, len(v))
	}
	return store.KV{Key: string(k), Value: append([]byte(nil), v[recordHeader:]...),
		CreateRev: int64(binary.BigEndian.Uint64(v[0:8])), ModRev: int64(binary.BigEndian.Uint64(v[8:16]))}, nil
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.check(ctx); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decode([]byte(key), v)
		return err
	})
	return kv, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	var out []store.KV
	var rev int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev = readRev(tx)
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, kv)
		}
		return nil
	})
	return out, rev, err
}

// Rev implements store.Store.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var rev int64
	err := s.db.View(func(tx *bbolt.Tx) error { rev = readRev(tx); return nil })
	return rev, err
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, t store.Txn) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	var rev int64
	var events []store.Event
	err := s.db.Update(func(tx *bbolt.Tx) error {
		kvb := tx.Bucket(bucketKV)
		rev = readRev(tx)
		for _, c := range t.Compares {
			var mod int64
			if v := kvb.Get([]byte(c.Key)); v != nil {
				kv, err := decode([]byte(c.Key), v)
				if err != nil {
					return err
				}
				mod = kv.ModRev
			}
			if mod != c.ModRev {
				return store.ErrConflict
			}
		}
		if len(t.Ops) == 0 {
			return nil
		}
		rev++
		entries := make([]logEntry, 0, len(t.Ops))
		events = make([]store.Event, 0, len(t.Ops))
		for _, op := range t.Ops {
			k := []byte(op.Key)
			switch op.Type {
			case store.OpPut:
				create := rev
				if old := kvb.Get(k); old != nil {
					prev, err := decode(k, old)
					if err != nil {
						return err
					}
					create = prev.CreateRev
				}
				if err := kvb.Put(k, encodeRecord(create, rev, op.Value)); err != nil {
					return err
				}
				val := append([]byte(nil), op.Value...)
				entries = append(entries, logEntry{T: store.EventPut, K: op.Key, V: val, C: create})
				events = append(events, store.Event{Type: store.EventPut,
					KV: store.KV{Key: op.Key, Value: val, CreateRev: create, ModRev: rev}})
			case store.OpDelete:
				if kvb.Get(k) == nil {
					continue
				}
				if err := kvb.Delete(k); err != nil {
					return err
				}
				entries = append(entries, logEntry{T: store.EventDelete, K: op.Key})
				events = append(events, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, ModRev: rev}})
			default:
				return fmt.Errorf("store: unknown op type %d", op.Type)
			}
		}
		return s.appendLog(tx, rev, entries)
	})
	if err != nil {
		return 0, err
	}
	s.broadcast(events)
	return rev, nil
}

// appendLog records a revision's changes and compacts the oldest ones.
func (s *Store) appendLog(tx *bbolt.Tx, rev int64, entries []logEntry) error {
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	lb := tx.Bucket(bucketLog)
	if err := lb.Put(u64(rev), b); err != nil {
		return err
	}
	if err := tx.Bucket(bucketMeta).Put(keyRev, u64(rev)); err != nil {
		return err
	}
	// Drop revisions older than the history window (a few per commit at
	// most, so compaction never stalls a writer).
	limit := rev - s.opts.HistoryRevisions
	c := lb.Cursor()
	for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= limit; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// broadcast fans events out; called with s.mu held.
func (s *Store) broadcast(events []store.Event) {
	for w := range s.watchers {
		for _, e := range events {
			if !strings.HasPrefix(e.KV.Key, w.prefix) {
				continue
			}
			select {
			case w.ch <- e:
			default: // too far behind: drop it; the caller re-lists
				delete(s.watchers, w)
				close(w.ch)
			}
			if _, ok := s.watchers[w]; !ok {
				break
			}
		}
	}
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var replay []store.Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		cur := readRev(tx)
		if afterRev >= cur {
			return nil
		}
		c := tx.Bucket(bucketLog).Cursor()
		k, v := c.Seek(u64(afterRev + 1))
		if k == nil || int64(binary.BigEndian.Uint64(k)) != afterRev+1 {
			return store.ErrCompacted
		}
		for ; k != nil; k, v = c.Next() {
			rev := int64(binary.BigEndian.Uint64(k))
			var entries []logEntry
			if err := json.Unmarshal(v, &entries); err != nil {
				return fmt.Errorf("store: corrupt change log at revision %d: %w", rev, err)
			}
			for _, e := range entries {
				if !strings.HasPrefix(e.K, prefix) {
					continue
				}
				ev := store.Event{Type: e.T, KV: store.KV{Key: e.K, Value: e.V, CreateRev: e.C, ModRev: rev}}
				replay = append(replay, ev)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	w := &watcher{prefix: prefix, ch: make(chan store.Event, len(replay)+s.opts.WatchBuffer)}
	for _, e := range replay {
		w.ch <- e
	}
	s.watchers[w] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.done:
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[w]; ok {
			delete(s.watchers, w)
			close(w.ch)
		}
	}()
	return w.ch, nil
}

// Close implements store.Store: pending watches end.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	for w := range s.watchers {
		delete(s.watchers, w)
		close(w.ch)
	}
	return s.db.Close()
}

var _ store.Store = (*Store)(nil)
