package bolt

import (
	"context"
	"fmt"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/store"
)

// watcher is one Watch. Its fields are guarded by Store.mu.
type watcher struct {
	prefix   string
	afterRev int64
	ch       chan store.Event // nil while the history is being replayed
	pending  []store.Event    // live events published during the replay
	stop     func() bool      // unregisters the ctx callback
	gone     bool             // removed: ctx done, store closed or too slow
}

// Watch implements store.Store.
//
// The watcher is registered first, at the last published revision R; the
// change log (afterRev, R] is then read without holding up commits, while
// events after R collect in the watcher; both are queued on the channel
// before it is returned. So no revision is missed or repeated, and commits
// never wait for a replay. Events published to several watchers share
// their Value bytes: treat them as read-only.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if afterRev < 0 {
		return nil, fmt.Errorf("store: watch after negative revision %d", afterRev)
	}
	w := &watcher{prefix: prefix, afterRev: afterRev}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	upTo := s.rev
	s.watchers[w] = struct{}{}
	s.mu.Unlock()

	var replay []store.Event
	if afterRev < upTo {
		var err error
		if replay, err = s.history(ctx, prefix, afterRev, upTo); err != nil {
			s.mu.Lock()
			s.dropLocked(w)
			s.mu.Unlock()
			return nil, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if w.gone { // the store was closed during the replay
		return nil, store.ErrClosed
	}
	w.ch = make(chan store.Event, len(replay)+len(w.pending)+s.opts.WatchBuffer)
	for _, e := range replay {
		w.ch <- e
	}
	for _, e := range w.pending {
		w.ch <- e
	}
	w.pending = nil
	w.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.dropLocked(w)
	})
	return w.ch, nil
}

// history reads the events of revisions (afterRev, upTo] under prefix
// from the change log.
func (s *Store) history(ctx context.Context, prefix string, afterRev, upTo int64) ([]store.Event, error) {
	var out []store.Event
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		want := afterRev + 1
		for k, v := c.Seek(u64(want)); k != nil && want <= upTo; k, v = c.Next() {
			rev, err := logRev(k)
			if err != nil {
				return err
			}
			if rev != want {
				break
			}
			if out, err = decodeLog(rev, v, prefix, out); err != nil {
				return err
			}
			want++
		}
		switch {
		case want == afterRev+1:
			return store.ErrCompacted // the oldest revision asked for is gone
		case want <= upTo:
			return fmt.Errorf("store: change log is missing revision %d", want)
		}
		return nil
	})
	return out, err
}

// publishLocked hands one revision's events to every watcher; a watcher
// without room for all of the revision's events it matches is dropped
// rather than waited for, before it gets any of them: a dropped watch
// ends between two revisions, so resuming after the last revision it
// delivered misses nothing (the replay's channel is sized to hold any
// revision). Called with s.mu held, in revision order.
func (s *Store) publishLocked(rev int64, events []store.Event) {
	s.rev = rev
	for w := range s.watchers {
		if rev <= w.afterRev {
			continue
		}
		n := 0
		for _, e := range events {
			if strings.HasPrefix(e.KV.Key, w.prefix) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		if w.ch != nil && cap(w.ch)-len(w.ch) < n {
			// Only this goroutine sends, so the room can only grow.
			s.dropLocked(w) // too far behind: the caller resumes or re-lists
			continue
		}
		for _, e := range events {
			if !strings.HasPrefix(e.KV.Key, w.prefix) {
				continue
			}
			if w.ch == nil {
				w.pending = append(w.pending, e)
			} else {
				w.ch <- e
			}
		}
	}
}

// dropLocked removes w and closes its channel; called with s.mu held.
func (s *Store) dropLocked(w *watcher) {
	if w.gone {
		return
	}
	w.gone = true
	delete(s.watchers, w)
	if w.stop != nil {
		w.stop()
	}
	if w.ch != nil {
		close(w.ch)
	}
}
