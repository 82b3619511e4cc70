// Package cache keeps some store prefixes in server memory, each fed by a
// watch of its prefix, so control loops and request checks read objects
// without listing and decoding the store on every pass.
//
// Reads are as fresh as a store read: List and Get first wait until the
// table has applied every event up to the store's current revision
// (sync). That relies on the embedded store's Rev contract — every event
// of a revision Rev returned is already queued on the watch — so a table
// answers at least what a List of the store would have, including the
// caller's own writes and whole transactions, never half of one.
//
// Values are decoded lazily, once per change, by the first reader that
// needs them; objects returned are shared by every reader and must not
// be modified (copy the value first).
package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/store"
)

// Cache groups the tables of one store; each table follows its own
// prefix.
type Cache struct {
	st  store.Store
	log *slog.Logger

	mu      sync.Mutex
	ctx     context.Context // set by Start; tables registered later start at once
	started bool
	feeds   []*feed
}

// New makes a cache of st. Register tables, then Start it (a table's
// first read starts it too, for as long as the store is open).
func New(st store.Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{st: st, log: log}
}

// Start feeds every table until ctx ends or the store closes; later calls
// do nothing.
func (c *Cache) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return
	}
	c.started, c.ctx = true, ctx
	for _, f := range c.feeds {
		go f.run(ctx)
	}
}

func (c *Cache) add(f *feed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.feeds = append(c.feeds, f)
	if c.started {
		go f.run(c.ctx)
	}
}

// sink is what a feed fills: a typed table.
type sink interface {
	load(kvs []store.KV, rev int64)
	apply(evs []store.Event) // one revision's events under the prefix
}

// feed keeps one prefix's sink in step with the store.
type feed struct {
	c      *Cache
	prefix string
	sink   sink

	syncs chan syncReq  // sync requests, answered by run
	ready chan struct{} // closed once the prefix is loaded and watched
	done  chan struct{} // closed when run ended
	err   error         // why run ended; read after done
}

// syncReq asks the feed to confirm it holds every change up to rev.
type syncReq struct {
	rev   int64
	reply chan struct{}
}

func newFeed(c *Cache, prefix string, s sink) *feed {
	return &feed{c: c, prefix: prefix, sink: s, syncs: make(chan syncReq),
		ready: make(chan struct{}), done: make(chan struct{})}
}

// sync waits until the feed has applied every change the store had made
// when sync was called, and returns that revision.
func (f *feed) sync(ctx context.Context) (int64, error) {
	f.c.Start(context.Background())
	select {
	case <-f.ready:
	case <-f.done:
		return 0, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	rev, err := f.c.st.Rev(ctx)
	if err != nil {
		return 0, err
	}
	req := syncReq{rev: rev, reply: make(chan struct{})}
	select {
	case f.syncs <- req:
	case <-f.done:
		return 0, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case <-req.reply:
		return rev, nil
	case <-f.done:
		return 0, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run loads the prefix, then applies its watch; a dropped watch resumes
// where it stopped, a compacted one reloads.
func (f *feed) run(ctx context.Context) {
	defer close(f.done)
	var waiting []syncReq // requests a dropped watch left unanswered
	loaded := false
	var after int64
	for {
		if !loaded {
			kvs, rev, err := f.c.st.List(ctx, f.prefix)
			if err != nil {
				if f.stop(ctx, err) {
					return
				}
				continue
			}
			f.sink.load(kvs, rev)
			after, loaded = rev, true
		}
		ch, err := f.c.st.Watch(ctx, f.prefix, after)
		if errors.Is(err, store.ErrCompacted) {
			f.c.log.Warn("cache: watch history compacted; reloading", "prefix", f.prefix, "after", after)
			loaded = false
			continue
		}
		if err != nil {
			if f.stop(ctx, err) {
				return
			}
			continue
		}
		select {
		case <-f.ready:
		default:
			close(f.ready)
		}
		after, waiting = f.follow(ctx, ch, after, waiting)
		if ctx.Err() != nil {
			f.err = ctx.Err()
			return
		}
	}
}

// stop records err and reports whether the feed must end (the store
// closed or ctx ended); other errors are retried after a pause.
func (f *feed) stop(ctx context.Context, err error) bool {
	if errors.Is(err, store.ErrClosed) || ctx.Err() != nil {
		f.err = err
		return true
	}
	f.c.log.Warn("cache: store read failed; retrying", "prefix", f.prefix, "err", err)
	if !ctxsleep.Sleep(ctx, time.Second) {
		f.err = ctx.Err()
		return true
	}
	return false
}

// follow applies ch until it closes, one whole revision at a time: the
// events of the newest revision wait until a later revision's first
// event shows they are complete, or until a sync needs them — the store
// queues a revision's events before Rev reports it, so once the channel
// is drained after a request for rev, everything up to rev is here.
// Requests still waiting when ch closes are returned, to be answered
// from the next watch. It returns the revision to resume after: the
// last one applied.
func (f *feed) follow(ctx context.Context, ch <-chan store.Event, after int64, waiting []syncReq) (int64, []syncReq) {
	var pend []store.Event
	pendRev := after
	flush := func() {
		if len(pend) > 0 {
			f.sink.apply(pend)
			after, pend = pendRev, pend[:0]
		}
	}
	add := func(ev store.Event) {
		if ev.KV.ModRev != pendRev {
			flush()
			pendRev = ev.KV.ModRev
		}
		pend = append(pend, ev)
	}
	for {
		if len(waiting) > 0 {
			if !f.drain(ch, add, &waiting) {
				return after, waiting
			}
			upTo := int64(0)
			for _, r := range waiting {
				upTo = max(upTo, r.rev)
			}
			if pendRev <= upTo {
				flush()
			}
			for _, r := range waiting {
				close(r.reply)
			}
			waiting = waiting[:0]
		}
		select {
		case ev, ok := <-ch:
			if !ok {
				return after, waiting
			}
			add(ev)
		case req := <-f.syncs:
			waiting = append(waiting, req)
		case <-ctx.Done():
			return after, waiting
		}
	}
}

// drain adds every event queued on ch, collecting sync requests that
// arrive meanwhile; false when ch closed.
func (f *feed) drain(ch <-chan store.Event, add func(store.Event), reqs *[]syncReq) bool {
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return false
			}
			add(ev)
		case r := <-f.syncs:
			*reqs = append(*reqs, r)
		default:
			return true
		}
	}
}
