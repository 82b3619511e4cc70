// Package cache keeps some store prefixes in server memory, fed by one
// watch of the whole store, so control loops and request checks read
// objects without listing and decoding the store on every pass.
//
// Reads are as fresh as a store read: List and Get first wait until the
// cache has applied every event up to the store's current revision (Sync).
// That relies on the embedded store's Rev contract — every event of a
// revision Rev returned is already queued on the watch — so the cache
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
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/store"
)

// Cache is one watch of the store feeding registered tables.
type Cache struct {
	st  store.Store
	log *slog.Logger

	start sync.Once
	syncs chan syncReq // Sync requests, answered by the feeding loop

	mu      sync.Mutex
	started bool
	tables  []table
	ready  chan struct{} // closed once every table is loaded
	err    error         // why the cache stopped, once it has
	done   chan struct{} // closed when the feeding loop ended
}

// table is the untyped side of a Table.
type table interface {
	prefix() string
	load(kvs []store.KV)
	apply(evs []store.Event) // one revision's events under the prefix
}

// New makes a cache of st. Register tables, then Start it (reads start
// it too).
func New(st store.Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{st: st, log: log, syncs: make(chan syncReq), ready: make(chan struct{}), done: make(chan struct{})}
}

// Start feeds the cache until ctx ends or the store closes; later calls
// do nothing.
func (c *Cache) Start(ctx context.Context) {
	c.start.Do(func() {
		c.mu.Lock()
		c.started = true
		c.mu.Unlock()
		go c.run(ctx)
	})
}

// Sync waits until the cache has applied every change the store had made
// when Sync was called.
func (c *Cache) Sync(ctx context.Context) error {
	c.Start(context.Background()) // a cache read before Start lives as long as its store
	select {
	case <-c.ready:
	case <-c.done:
		return c.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
	rev, err := c.st.Rev(ctx)
	if err != nil {
		return err
	}
	req := syncReq{rev: rev, reply: make(chan struct{})}
	select {
	case c.syncs <- req:
	case <-c.done:
		return c.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.reply:
		return nil
	case <-c.done:
		return c.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Cache) stopped() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return store.ErrClosed
}

// run loads every table, then applies the store's watch; a dropped watch
// resumes where it stopped, a compacted one reloads the tables.
func (c *Cache) run(ctx context.Context) {
	defer close(c.done)
	loaded := false
	var after int64
	for ctx.Err() == nil {
		if !loaded {
			rev, err := c.load(ctx)
			if err != nil {
				if c.fatal(ctx, err) {
					return
				}
				continue
			}
			after, loaded = rev, true
		}
		ch, err := c.st.Watch(ctx, "", after)
		if errors.Is(err, store.ErrCompacted) {
			c.log.Warn("cache: watch history compacted; reloading", "after", after)
			loaded = false
			continue
		}
		if err != nil {
			if c.fatal(ctx, err) {
				return
			}
			continue
		}
		select {
		case <-c.ready:
		default:
			close(c.ready)
		}
		after = c.follow(ctx, ch, after)
	}
	c.mu.Lock()
	c.err = cmpErr(c.err, ctx.Err())
	c.mu.Unlock()
}

// fatal records err and reports whether the cache must stop (the store
// closed or ctx ended); other errors are retried after a pause.
func (c *Cache) fatal(ctx context.Context, err error) bool {
	if errors.Is(err, store.ErrClosed) || ctx.Err() != nil {
		c.mu.Lock()
		c.err = cmpErr(err, ctx.Err())
		c.mu.Unlock()
		return true
	}
	c.log.Warn("cache: store read failed; retrying", "err", err)
	return !ctxsleep.Sleep(ctx, time.Second)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// load lists every table and returns a revision the watch may resume
// after: the oldest listing's, so no change is missed (events the other
// listings already hold are applied again, which changes nothing).
func (c *Cache) load(ctx context.Context) (int64, error) {
	c.mu.Lock()
	tables := append([]table(nil), c.tables...)
	c.mu.Unlock()
	var from int64 = -1
	for _, t := range tables {
		kvs, rev, err := c.st.List(ctx, t.prefix())
		if err != nil {
			return 0, err
		}
		t.load(kvs)
		if from < 0 || rev < from {
			from = rev
		}
	}
	if from < 0 {
		return c.st.Rev(ctx)
	}
	return from, nil
}

// syncReq asks the feeding loop to confirm it holds every change up to
// rev.
type syncReq struct {
	rev   int64
	reply chan struct{}
}

// follow applies ch until it closes, one whole revision at a time: the
// events of the newest revision wait until a later revision's first
// event shows they are complete, or until a Sync needs them — the store
// queues a revision's events before Rev reports it, so once the channel
// is drained after a request for rev, everything up to rev is here. It
// returns the revision to resume after: the last one applied.
func (c *Cache) follow(ctx context.Context, ch <-chan store.Event, after int64) int64 {
	var pend []store.Event
	pendRev := after
	flush := func() {
		if len(pend) > 0 {
			c.route(pend)
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
		select {
		case ev, ok := <-ch:
			if !ok {
				return after
			}
			add(ev)
		case req := <-c.syncs:
			reqs := []syncReq{req}
			if !c.drain(ch, add, &reqs) {
				return after
			}
			upTo := int64(0)
			for _, r := range reqs {
				upTo = max(upTo, r.rev)
			}
			if pendRev <= upTo {
				flush()
			}
			for _, r := range reqs {
				close(r.reply)
			}
		case <-ctx.Done():
			return after
		}
	}
}

// drain adds every event queued on ch, collecting Sync requests that
// arrive meanwhile; false when ch closed.
func (c *Cache) drain(ch <-chan store.Event, add func(store.Event), reqs *[]syncReq) bool {
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return false
			}
			add(ev)
		case r := <-c.syncs:
			*reqs = append(*reqs, r)
		default:
			return true
		}
	}
}

// route applies one revision's events, each table's share at once, so a
// reader sees all of a transaction or none of it.
func (c *Cache) route(evs []store.Event) {
	c.mu.Lock()
	tables := c.tables
	c.mu.Unlock()
	for _, t := range tables {
		p := t.prefix()
		var mine []store.Event
		for _, ev := range evs {
			if strings.HasPrefix(ev.KV.Key, p) {
				mine = append(mine, ev)
			}
		}
		if len(mine) > 0 {
			t.apply(mine)
		}
	}
}

func (c *Cache) register(t table) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		panic("cache: table " + t.prefix() + " registered after the cache started")
	}
	c.tables = append(c.tables, t)
}
