// Package fanout routes one store watch to many subscribers by owner:
// each event under a prefix goes only to the subscribers of the owner the
// Route function names (for berth, the node an instance is assigned to),
// so N watchers of M changes cost O(M), not O(N×M). Deletes go to the
// key's last owner; changes of keys with no owner go nowhere. A short
// history of routed events lets a subscriber resume from a revision as
// long as none of its own owner's events after it were trimmed; an older
// one gets ErrTooOld and must list again (or watch the store itself).
package fanout

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/store"
)

// ErrTooOld: the revision to resume after is older than the history.
var ErrTooOld = errors.New("fanout: revision older than the fan-out history")

// Defaults for Options fields left zero.
const (
	DefaultHistory = 8192
	DefaultBuffer  = 128
)

// Options configure a Hub.
type Options struct {
	Store  store.Store
	Prefix string
	// Route names the owner of a put's value ("" for none).
	Route func(kv store.KV) string
	// Group, when set, names the group of a key (for berth, an
	// instance's app); OwnsGroup answers whether an owner holds a key of
	// a group.
	Group func(key string) string
	// History is how many routed events are kept for resuming.
	History int
	// Buffer is how far a subscriber may lag behind live events before
	// it is dropped (default 128).
	Buffer int
	Log    *slog.Logger
}

type entry struct {
	owner string
	ev    store.Event
}

// Hub is one store watch fanned out by owner. Start it with Run.
type Hub struct {
	o Options

	mu     sync.Mutex
	ready  chan struct{} // closed once the first List is done
	err    error         // why the hub stopped, if it did
	owner  map[string]string
	groups map[string]map[string]int // owner → group → keys held (Options.Group)
	subs   map[string][]*Sub         // by owner; usually one each
	hist   []entry                   // routed events, oldest first, at most o.History
	start  int64                     // revision of the first List: nothing before is known
	// trimmed is, by owner, the newest revision of that owner's events
	// dropped from hist: every later event of the owner is still there.
	// A subscriber is resumable when neither is after its revision, so a
	// busy cluster's history, moving on for others, does not turn away
	// an agent whose own few events are all kept.
	trimmed map[string]int64
	last    int64 // revision the hub has routed up to
	closed  bool
}

// Sub is one subscriber. Its queue is a slice that grows with the
// events waiting for it and is handed over whole by Take, so an idle
// subscriber holds no buffer; it is dropped once more than limit wait.
type Sub struct {
	h      *Hub
	owner  string
	after  int64
	limit  int
	q      []store.Event // guarded by h.mu
	notify chan struct{} // 1 slot: events queued; closed when dropped
	// onReady, when set, is called (under the hub's lock: it must not
	// block) whenever notify is signalled or closed.
	onReady func()
	stop    func() bool // stops the drop at the end of Subscribe's ctx
	gone    bool
}

// New makes a hub; Run feeds it.
func New(o Options) *Hub {
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Hub{o: o, ready: make(chan struct{}), owner: map[string]string{}, groups: map[string]map[string]int{},
		subs: map[string][]*Sub{}, trimmed: map[string]int64{}}
}

// Run lists the prefix once, then routes its watch until ctx ends or the
// store closes; a dropped watch resumes from the last routed revision.
func (h *Hub) Run(ctx context.Context) {
	defer h.stop()
	kvs, rev, err := h.o.Store.List(ctx, h.o.Prefix)
	for err != nil {
		if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			close(h.ready)
			return
		}
		ctxsleep.Sleep(ctx, time.Second)
		kvs, rev, err = h.o.Store.List(ctx, h.o.Prefix)
	}
	h.mu.Lock()
	for _, kv := range kvs {
		h.setOwnerLocked(kv.Key, h.o.Route(kv))
	}
	h.start, h.last = rev, rev
	h.mu.Unlock()
	close(h.ready)
	for ctx.Err() == nil {
		h.mu.Lock()
		from := h.last
		h.mu.Unlock()
		ch, err := h.o.Store.Watch(ctx, h.o.Prefix, from)
		if err != nil {
			if errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrCompacted) {
				h.o.Log.Warn("fan-out watch ended", "prefix", h.o.Prefix, "err", err)
				return // subscribers are dropped and watch the store
			}
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		for ev := range ch {
			h.route(ev)
		}
	}
}

// route hands one event to its owner's subscribers. The owner index
// holds every key with an owner since the first List, so a delete of a
// key without one concerns nobody.
func (h *Hub) route(ev store.Event) {
	var owner string
	if ev.Type == store.EventPut {
		owner = h.o.Route(ev.KV) // decoded outside the lock
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = ev.KV.ModRev
	if ev.Type == store.EventDelete {
		owner = h.owner[ev.KV.Key]
		h.setOwnerLocked(ev.KV.Key, "")
	} else {
		h.setOwnerLocked(ev.KV.Key, owner)
	}
	if owner == "" {
		return
	}
	h.hist = append(h.hist, entry{owner: owner, ev: ev})
	if len(h.hist) > h.o.History {
		drop := len(h.hist) - h.o.History/2
		for _, e := range h.hist[:drop] {
			h.trimmed[e.owner] = e.ev.KV.ModRev
		}
		h.hist = append(h.hist[:0:0], h.hist[drop:]...)
	}
	// Backwards: a subscriber dropped by sendLocked is swapped with the
	// last one, which has had the event.
	subs := h.subs[owner]
	for i := len(subs) - 1; i >= 0; i-- {
		h.sendLocked(subs[i], ev)
	}
}

// sendLocked queues ev for s, dropping s if it is too far behind.
func (h *Hub) sendLocked(s *Sub, ev store.Event) {
	if ev.KV.ModRev <= s.after {
		return
	}
	if len(s.q) >= s.limit {
		h.dropLocked(s)
		return
	}
	s.q = append(s.q, ev)
	s.signalLocked()
}

// signalLocked tells the subscriber events are waiting.
func (s *Sub) signalLocked() {
	select {
	case s.notify <- struct{}{}:
	default: // already signalled
	}
	if s.onReady != nil {
		s.onReady()
	}
}

func (h *Hub) dropLocked(s *Sub) {
	if s.gone {
		return
	}
	s.gone = true
	subs := h.subs[s.owner]
	if i := slices.Index(subs, s); i >= 0 {
		last := len(subs) - 1
		subs[i], subs[last] = subs[last], nil
		subs = subs[:last]
	}
	if len(subs) == 0 {
		delete(h.subs, s.owner)
	} else {
		h.subs[s.owner] = subs
	}
	close(s.notify)
	if s.onReady != nil {
		s.onReady()
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, subs := range h.subs {
		for i := len(subs) - 1; i >= 0; i-- {
			h.dropLocked(subs[i])
		}
	}
}

// Subscribe streams owner's events after revision after until ctx ends
// or the subscriber falls behind by more than Options.Buffer events (it
// is then dropped: see Ready and Take). ErrTooOld means the history no
// longer holds every event of owner after after.
func (h *Hub) Subscribe(ctx context.Context, owner string, after int64) (*Sub, error) {
	return h.SubscribeFunc(ctx, owner, after, nil)
}

// SubscribeFunc is Subscribe with onReady called, under the hub's lock,
// each time Ready would receive or close: a caller serving many
// subscribers can then wake one writer for any of them instead of
// parking a goroutine on each Ready. onReady must not block or call the
// hub.
func (h *Hub) SubscribeFunc(ctx context.Context, owner string, after int64, onReady func()) (*Sub, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.err != nil:
		return nil, h.err
	case h.closed:
		return nil, store.ErrClosed
	case after < h.start || after < h.trimmed[owner]:
		return nil, ErrTooOld
	}
	var replay []store.Event
	for _, e := range h.hist {
		if e.owner == owner && e.ev.KV.ModRev > after {
			replay = append(replay, e.ev)
		}
	}
	s := &Sub{h: h, owner: owner, after: after, limit: len(replay) + h.o.Buffer, q: replay,
		notify: make(chan struct{}, 1), onReady: onReady}
	if len(replay) > 0 {
		s.signalLocked()
	}
	h.subs[owner] = append(h.subs[owner], s)
	s.stop = context.AfterFunc(ctx, s.drop)
	return s, nil
}

// Close ends the subscription before its ctx does.
func (s *Sub) Close() {
	s.stop()
	s.drop()
}

func (s *Sub) drop() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.dropLocked(s)
}

// Ready receives when events may be waiting for Take, and is closed
// once the subscriber is dropped.
func (s *Sub) Ready() <-chan struct{} { return s.notify }

// Take returns the events queued so far, oldest first, and empties the
// queue. ok is false once the subscriber is dropped: evs are still the
// next events in order, but none follow them.
func (s *Sub) Take() (evs []store.Event, ok bool) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	evs, s.q = s.q, nil
	return evs, !s.gone
}

// Rev is a revision the subscriber has seen every event of its owner up
// to, once it has taken every queued event; ok is false while events
// are still queued or once it is dropped (an event was lost).
func (s *Sub) Rev() (rev int64, ok bool) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if len(s.q) > 0 || s.gone {
		return 0, false
	}
	return max(s.h.last, s.after), true
}

// setOwnerLocked records key's owner ("" for none) and keeps the group
// counts in step.
func (h *Hub) setOwnerLocked(key, owner string) {
	prev, had := h.owner[key]
	if had && prev == owner {
		return
	}
	if owner == "" {
		delete(h.owner, key)
	} else {
		h.owner[key] = owner
	}
	if h.o.Group == nil {
		return
	}
	g := h.o.Group(key)
	if had {
		if h.groups[prev][g]--; h.groups[prev][g] <= 0 {
			delete(h.groups[prev], g)
			if len(h.groups[prev]) == 0 {
				delete(h.groups, prev)
			}
		}
	}
	if owner != "" {
		if h.groups[owner] == nil {
			h.groups[owner] = map[string]int{}
		}
		h.groups[owner][g]++
	}
}

// OwnsGroup reports whether owner holds at least one key of group (see
// Options.Group), as of the last routed event. It waits for the first
// List.
func (h *Hub) OwnsGroup(ctx context.Context, owner, group string) (bool, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return false, h.err
	}
	return h.groups[owner][group] > 0, nil
}
