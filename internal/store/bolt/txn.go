package bolt

import (
	"context"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/store"
)

// maxBatch bounds how many queued Txns share one bbolt transaction (and
// one sync): when the committer is busy, Txns queue and the next commit
// takes them all, so under load the cost of a sync is spread wide.
const maxBatch = 1024

// request is one Txn waiting for the committer.
type request struct {
	txn  store.Txn
	done chan result // buffered; receives exactly one result
}

type result struct {
	rev int64
	err error
}

// outcome is what applying one request inside a batch produced.
type outcome struct {
	rev    int64
	err    error // ErrConflict: nothing of this request was written
	events []store.Event
}

// Txn implements store.Store. It returns once the revision is fsynced and
// published to watchers. ctx is honoured until the committer takes the
// Txn; after that the outcome is always reported, never a cancellation.
func (s *Store) Txn(ctx context.Context, t store.Txn) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if err := validate(t); err != nil {
		return 0, err
	}
	if len(t.Ops) == 0 {
		return s.check(ctx, t.Compares)
	}
	r := &request{txn: t, done: make(chan result, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.done:
		return 0, store.ErrClosed
	}
	res := <-r.done
	return res.rev, res.err
}

// check answers a Txn without Ops from a read transaction: it writes
// nothing, so it needs neither the committer nor an fsync.
func (s *Store) check(ctx context.Context, compares []store.Compare) (int64, error) {
	var rev int64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rev = readRev(tx)
		o, err := apply(tx, rev, store.Txn{Compares: compares})
		if err == nil {
			err = o.err
		}
		return err
	})
	return rev, err
}

// validate refuses what bbolt would refuse halfway through a batch.
func validate(t store.Txn) error {
	for i, op := range t.Ops {
		switch {
		case op.Type != store.OpPut && op.Type != store.OpDelete:
			return fmt.Errorf("store: op %d on %q: unknown op type %d", i, op.Key, op.Type)
		case op.Key == "":
			return fmt.Errorf("store: op %d: empty key", i)
		case len(op.Key) > bbolt.MaxKeySize:
			return fmt.Errorf("store: op %d: key of %d bytes is longer than %d", i, len(op.Key), bbolt.MaxKeySize)
		case len(op.Value) > bbolt.MaxValueSize/4:
			return fmt.Errorf("store: op %d on %q: value of %d bytes is too large", i, op.Key, len(op.Value))
		}
	}
	return nil
}

// commitLoop is the committer: it takes every Txn queued at the moment and
// commits them together.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	for {
		var batch []*request
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.done:
			return
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.commit(batch)
	}
}

// commit applies batch in one bbolt transaction, each request under its
// own revision in queue order. A request that fails with anything but a
// conflict is answered with its error and the rest are retried without it,
// so one bad Txn never leaves part of itself behind or fails the others.
func (s *Store) commit(batch []*request) {
	for len(batch) > 0 {
		out := make([]outcome, len(batch))
		failed := -1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			base := readRev(tx)
			rev := base
			for i, r := range batch {
				o, err := applySafely(tx, rev, r.txn)
				if err != nil {
					failed = i
					return err
				}
				out[i], rev = o, o.rev
			}
			if rev == base {
				return nil
			}
			if err := tx.Bucket(bucketMeta).Put(keyRev, u64(rev)); err != nil {
				return err
			}
			return compact(tx.Bucket(bucketLog), rev-s.opts.HistoryRevisions)
		})
		if err != nil && failed >= 0 {
			batch[failed].done <- result{err: err}
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		if err != nil {
			for _, r := range batch {
				r.done <- result{err: fmt.Errorf("store: commit: %w", err)}
			}
			return
		}
		s.mu.Lock()
		for _, o := range out {
			if len(o.events) > 0 {
				s.publishLocked(o.rev, o.events)
			}
		}
		s.mu.Unlock()
		for i, r := range batch {
			r.done <- result{rev: out[i].rev, err: out[i].err}
		}
		return
	}
}

// applySafely is apply with bbolt panics (a damaged page) turned into an
// error for this request.
func applySafely(tx *bbolt.Tx, rev int64, t store.Txn) (o outcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: internal error applying txn: %v", r)
		}
	}()
	return apply(tx, rev, t)
}

// apply checks t's compares against the state at rev and, if they hold,
// writes its ops under rev+1 (or leaves rev alone if nothing changes: a
// Txn of deletes of missing keys writes nothing).
func apply(tx *bbolt.Tx, rev int64, t store.Txn) (outcome, error) {
	kvb := tx.Bucket(bucketKV)
	for _, c := range t.Compares {
		var mod int64
		if v := kvb.Get([]byte(c.Key)); v != nil {
			var err error
			if _, mod, err = recordRevs([]byte(c.Key), v); err != nil {
				return outcome{}, err
			}
		}
		if mod != c.ModRev {
			return outcome{rev: rev, err: store.ErrConflict}, nil
		}
	}
	next := rev + 1
	var events []store.Event
	for _, op := range t.Ops {
		k := []byte(op.Key)
		old := kvb.Get(k)
		switch op.Type {
		case store.OpPut:
			create := next
			if old != nil {
				c, _, err := recordRevs(k, old)
				if err != nil {
					return outcome{}, err
				}
				create = c
			}
			if err := kvb.Put(k, encodeRecord(create, next, op.Value)); err != nil {
				return outcome{}, err
			}
			events = append(events, store.Event{Type: store.EventPut,
				KV: store.KV{Key: op.Key, Value: clone(op.Value), CreateRev: create, ModRev: next}})
		case store.OpDelete:
			if old == nil {
				continue
			}
			if err := kvb.Delete(k); err != nil {
				return outcome{}, err
			}
			events = append(events, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, ModRev: next}})
		default:
			return outcome{}, fmt.Errorf("store: unknown op type %d", op.Type)
		}
	}
	if len(events) == 0 {
		return outcome{rev: rev}, nil
	}
	lb := tx.Bucket(bucketLog)
	lb.FillPercent = 1 // revisions only grow: full pages, half the file
	if err := lb.Put(u64(next), encodeLog(events)); err != nil {
		return outcome{}, err
	}
	return outcome{rev: next, events: events}, nil
}

// compact drops change-log revisions up to and including limit. Normally
// that is one per commit; after HistoryRevisions was lowered it is all the
// excess at once.
func compact(lb *bbolt.Bucket, limit int64) error {
	if limit <= 0 {
		return nil
	}
	c := lb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		rev, err := logRev(k)
		if err != nil {
			return err
		}
		if rev > limit {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// logRev decodes a change-log key.
func logRev(k []byte) (int64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("store: corrupt change log key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k)), nil
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
