package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/clusterview"
	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/store"
)

// viewRoutes serve the redacted cluster view to nodes and the admin
// (docs/dns.md): what node DNS and routing need, nothing private.
func (s *Server) viewRoutes() {
	hub := &viewHub{st: s.opts.Store, log: s.log, changed: make(chan struct{})}
	s.mux.HandleFunc("GET /v1/cluster/view", s.nodeAuth(func(w http.ResponseWriter, r *http.Request) {
		s.clusterView(w, r, hub)
	}))
}

// clusterView answers the current view, or with ?watch=true streams it
// as NDJSON: a snapshot line, then a snapshot line after every change and
// a progress line every watchProgressEvery. With ?after=REV (the last
// revision the client has) the first snapshot is left out when nothing
// changed since REV.
func (s *Server) clusterView(w http.ResponseWriter, r *http.Request, hub *viewHub) {
	q := r.URL.Query()
	var after int64
	if a := q.Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			badRequest(w, "after", "must be a revision (a non-negative number)")
			return
		}
	}
	ctx := r.Context()
	defer hub.subscribe()()
	cur, changed := hub.latest()
	if q.Get("watch") != "true" {
		for cur == nil {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				cur, changed = hub.latest()
			}
		}
		writeJSON(w, http.StatusOK, cur.view)
		return
	}
	enc, flusher, tick := startStream(w)
	defer tick.Stop()
	last := after
	progress := func() bool {
		if err := enc.Encode(clusterview.Line{Type: clusterview.LineProgress, Rev: last}); err != nil {
			return false
		}
		flush(flusher)
		return true
	}
	// The first line tells the client the stream is established.
	if !progress() {
		return
	}
	for {
		if cur != nil && cur.rev != last {
			if _, err := w.Write(cur.line); err != nil {
				return
			}
			flush(flusher)
			last = cur.rev
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !progress() {
				return
			}
		case <-changed:
			cur, changed = hub.latest()
		}
	}
}

// viewHub shares one store source among every view request: the view is
// redacted and encoded once per change, not once per watching node. The
// source runs while at least one request uses it.
type viewHub struct {
	st  store.Store
	log *slog.Logger

	mu      sync.Mutex
	users   int
	gen     int // identifies the running source; bumped when it stops
	cancel  context.CancelFunc
	cur     *encodedView  // nil until the running source's first view
	changed chan struct{} // closed and replaced when cur changes
}

// encodedView is one redacted view and its snapshot line.
type encodedView struct {
	rev  int64
	view clusterview.View
	line []byte
}

// subscribe starts the source for the first user; the returned func
// releases the use and stops the source after the last one.
func (h *viewHub) subscribe() (release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users++
	if h.users == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		go h.run(ctx, h.gen)
	}
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.users--
		if h.users == 0 {
			h.cancel()
			h.gen++
			h.cur = nil
		}
	}
}

// latest is the current view (nil: none yet) and a channel closed when
// it changes.
func (h *viewHub) latest() (*encodedView, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur, h.changed
}

// run reads the store until ctx ends and publishes every view.
func (h *viewHub) run(ctx context.Context, gen int) {
	var snaps <-chan table.Snapshot
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
		var err error
		if snaps, err = router.NewStoreSource(h.st, h.log).Snapshots(ctx); err == nil {
			break
		}
		h.log.Warn("cluster view: cannot read the store; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	for snap := range snaps {
		v := clusterview.Redact(snap)
		line, err := json.Marshal(clusterview.Line{Type: clusterview.LineSnapshot, Rev: v.Rev, View: &v})
		if err != nil {
			h.log.Error("cluster view: encode", "err", err)
			continue
		}
		h.mu.Lock()
		if h.gen == gen {
			h.cur = &encodedView{rev: v.Rev, view: v, line: append(line, '\n')}
			close(h.changed)
			h.changed = make(chan struct{})
		}
		h.mu.Unlock()
	}
}
