package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/clusterview"
	"github.com/berth-dev/berth/internal/router"
)

// viewRoutes serve the redacted cluster view to nodes and the admin
// (docs/dns.md): what node DNS and routing need, nothing private.
func (s *Server) viewRoutes() {
	s.mux.HandleFunc("GET /v1/cluster/view", s.nodeAuth(s.clusterView))
}

// clusterView answers the current view, or with ?watch=true streams it
// as NDJSON: a snapshot line, then a snapshot line after every change and
// a progress line every watchProgressEvery. With ?after=REV (the last
// revision the client has) the first snapshot is left out when nothing
// changed since REV.
func (s *Server) clusterView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	watch := q.Get("watch") == "true"
	var after int64
	if a := q.Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
			badRequest(w, "after", "must be a revision (a non-negative number)")
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	snaps, err := router.NewStoreSource(s.opts.Store, s.log).Snapshots(ctx)
	if err != nil {
		s.storeFail(w, err)
		return
	}
	if !watch {
		snap, ok := <-snaps
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, clusterview.Redact(snap))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(watchProgressEvery)
	defer tick.Stop()
	last := after
	send := func(l clusterview.Line) bool {
		if err := enc.Encode(l); err != nil {
			return false
		}
		flush(flusher)
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !send(clusterview.Line{Type: clusterview.LineProgress, Rev: last}) {
				return
			}
		case snap, ok := <-snaps:
			if !ok {
				return
			}
			if after > 0 && snap.Rev == after {
				// The client's copy is current: only say so.
				after = 0
				if !send(clusterview.Line{Type: clusterview.LineProgress, Rev: last}) {
					return
				}
				continue
			}
			after, last = 0, snap.Rev
			v := clusterview.Redact(snap)
			if !send(clusterview.Line{Type: clusterview.LineSnapshot, Rev: v.Rev, View: &v}) {
				return
			}
		}
	}
}
