package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/fanout"
	"github.com/berth-dev/berth/internal/store/remote"
)

// watchProgressEvery is how often an idle watch stream carries a
// progress line, so clients detect dead connections.
const watchProgressEvery = 5 * time.Second

// storeRoutes serve the store to agents (and the admin): the backing of
// internal/store/remote. Agents are confined by nodeAuthz.
func (s *Server) storeRoutes() {
	m := s.mux
	m.HandleFunc("GET /v1/store/kv", s.nodeAuth(s.storeGet))
	m.HandleFunc("GET /v1/store/list", s.nodeAuth(s.storeList))
	m.HandleFunc("GET /v1/store/rev", s.nodeAuth(s.storeRev))
	m.HandleFunc("POST /v1/store/txn", s.nodeAuth(s.storeTxn))
	m.HandleFunc("GET /v1/store/watch", s.nodeAuth(s.storeWatch))
}

func forbidden(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusForbidden, model.APIError{Code: "forbidden", Message: msg})
}

// opError is a refusal of a store call, whichever transport carried it
// (an HTTP request or an agent session's frame).
type opError struct {
	status int
	e      model.APIError
}

func (e *opError) Error() string { return e.e.Message }

func refuse(status int, code, msg string) error {
	return &opError{status: status, e: model.APIError{Code: code, Message: msg}}
}

func refuseForbidden(msg string) error { return refuse(http.StatusForbidden, "forbidden", msg) }

// storeRefusal maps a store call's error to its status and API error;
// ok is false for an error of no store meaning (the caller's to map).
func storeRefusal(err error) (e *opError, ok bool) {
	switch {
	case errors.As(err, &e):
		return e, true
	case errors.Is(err, store.ErrNotFound):
		return &opError{http.StatusNotFound, model.APIError{Code: remote.CodeNotFound, Message: err.Error()}}, true
	case errors.Is(err, store.ErrConflict):
		return &opError{http.StatusConflict, model.APIError{Code: remote.CodeConflict, Message: err.Error()}}, true
	case errors.Is(err, store.ErrCompacted):
		return &opError{http.StatusGone, model.APIError{Code: remote.CodeCompacted, Message: err.Error()}}, true
	}
	return nil, false
}

func (s *Server) storeFail(w http.ResponseWriter, err error) {
	if e, ok := storeRefusal(err); ok {
		writeError(w, e.status, e.e)
		return
	}
	s.fail(w, err)
}

// getKV reads one key for z.
func (s *Server) getKV(ctx context.Context, z nodeAuthz, key string) (remote.KV, error) {
	if msg := z.canRead(key); msg != "" {
		return remote.KV{}, refuseForbidden(msg)
	}
	if msg, err := z.canReadRevision(ctx, key); err != nil {
		return remote.KV{}, err
	} else if msg != "" {
		return remote.KV{}, refuseForbidden(msg)
	}
	kv, err := s.opts.Store.Get(ctx, key)
	if err != nil {
		return remote.KV{}, err
	}
	if !z.visible(kv.Key, kv.Value) {
		return remote.KV{}, refuseForbidden(z.node + " may not read " + key + ": it is not assigned to this node")
	}
	return remote.FromKV(kv), nil
}

// listKVs lists a prefix for z, keeping what z may see.
func (s *Server) listKVs(ctx context.Context, z nodeAuthz, prefix string) (remote.ListResponse, error) {
	if msg := z.canList(prefix); msg != "" {
		return remote.ListResponse{}, refuseForbidden(msg)
	}
	var kvs []store.KV
	var rev int64
	var err error
	if !z.admin && prefix == model.PrefixInstances {
		// An agent's (re-)listing of its instances: from the state view,
		// without reading and decoding every instance of the cluster.
		kvs, rev, err = s.opts.State.Instances.ListKV(ctx, func(in *model.Instance) bool { return in.Node == z.node })
	} else {
		kvs, rev, err = s.opts.Store.List(ctx, prefix)
	}
	if err != nil {
		return remote.ListResponse{}, err
	}
	out := remote.ListResponse{KVs: make([]remote.KV, 0, len(kvs)), Rev: rev}
	for _, kv := range kvs {
		if z.visible(kv.Key, kv.Value) {
			out.KVs = append(out.KVs, remote.FromKV(kv))
		}
	}
	return out, nil
}

// txnAs applies a Txn for z: an agent's is authorized and its heartbeat
// stamped first (nodeAuthz.checkTxn).
func (s *Server) txnAs(ctx context.Context, z nodeAuthz, wt remote.Txn) (int64, error) {
	t, ok := wt.ToTxn()
	if !ok {
		return 0, &opError{http.StatusBadRequest, model.APIError{Code: "invalid", Message: "ops: op type must be put or delete",
			Fields: []model.FieldError{{Field: "ops", Message: "op type must be put or delete"}}}}
	}
	if !z.admin {
		var code int
		var msg string
		if t, code, msg = z.checkTxn(ctx, t); msg != "" {
			return 0, refuse(code, map[int]string{http.StatusConflict: remote.CodeConflict, http.StatusForbidden: "forbidden"}[code], msg)
		}
	}
	return s.opts.Store.Txn(ctx, t)
}

// heartbeatInterval is how often agents are asked to beat: slower in
// bigger clusters.
func (s *Server) heartbeatInterval() string {
	return model.HeartbeatInterval(s.opts.State.Nodes.Len()).String()
}

func (s *Server) storeGet(w http.ResponseWriter, r *http.Request) {
	kv, err := s.getKV(r.Context(), s.authz(r), r.URL.Query().Get("key"))
	if err != nil {
		s.storeFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, kv)
}

func (s *Server) storeList(w http.ResponseWriter, r *http.Request) {
	out, err := s.listKVs(r.Context(), s.authz(r), r.URL.Query().Get("prefix"))
	if err != nil {
		s.storeFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) storeRev(w http.ResponseWriter, r *http.Request) {
	rev, err := s.opts.Store.Rev(r.Context())
	if err != nil {
		s.storeFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, remote.RevResponse{Rev: rev})
}

func (s *Server) storeTxn(w http.ResponseWriter, r *http.Request) {
	var wt remote.Txn
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8*maxBodyBytes)).Decode(&wt); err != nil {
		badRequest(w, "body", "must be a store transaction: "+err.Error())
		return
	}
	z := s.authz(r)
	if !z.admin {
		// Agents pace their heartbeats by the cluster's size.
		w.Header().Set(model.HeaderHeartbeatInterval, s.heartbeatInterval())
	}
	rev, err := s.txnAs(r.Context(), z, wt)
	if err != nil {
		s.storeFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, remote.RevResponse{Rev: rev})
}

// storeWatch streams events after ?after= as NDJSON until the client
// goes away or the store drops the watcher (the stream then ends). An
// agent watching /instances/ is served from the per-node fan-out, so it
// costs the server only its own instances' changes.
func (s *Server) storeWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil || after < 0 {
		badRequest(w, "after", "must be a revision (a non-negative number)")
		return
	}
	z := s.authz(r)
	if msg := z.canList(prefix); msg != "" {
		forbidden(w, msg)
		return
	}
	// Events come from ch (a store watch) or from sub (the fan-out),
	// which signals on ready.
	var ch <-chan store.Event
	var sub *fanout.Sub
	var ready <-chan struct{}
	// progress is the revision a progress line may carry (ok false: use
	// the last event's).
	progress := func() (int64, bool) { return 0, false }
	if !z.admin && prefix == model.PrefixInstances {
		sub, err = s.nodeWatch.subscribe(r.Context(), s, z.node, after)
		switch {
		case err == nil:
			ready, progress = sub.Ready(), sub.Rev
		case errors.Is(err, fanout.ErrTooOld):
			// The agent lists again (from the state view, at a revision
			// the fan-out holds) rather than watching the store itself,
			// which would decode every instance change of the cluster
			// for it for as long as the stream lasts.
			s.storeFail(w, fmt.Errorf("%w: %w", store.ErrCompacted, err))
			return
		}
	}
	if ready == nil {
		if ch, err = s.opts.Store.Watch(r.Context(), prefix, after); err != nil {
			s.storeFail(w, err)
			return
		}
	}
	enc, flusher, tick := startStream(w)
	defer tick.Stop()
	last := after
	// send writes one event's line; events of other nodes are skipped
	// (the fan-out routed its events by node already): the next progress
	// line carries their revision so the client resumes after them.
	send := func(ev store.Event, routed bool) error {
		last = ev.KV.ModRev
		line := remote.WatchLine{Type: "put", KV: remote.FromKV(ev.KV)}
		if ev.Type == store.EventDelete {
			line.Type = "delete"
		} else if !routed && !z.visible(ev.KV.Key, ev.KV.Value) {
			return nil
		}
		return enc.Encode(line)
	}
	// The first line tells the client the stream is established.
	_ = enc.Encode(remote.WatchLine{Type: "progress", Rev: last})
	flush(flusher)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if rev, ok := progress(); ok {
				last = max(last, rev)
			}
			if err := enc.Encode(remote.WatchLine{Type: "progress", Rev: last}); err != nil {
				return
			}
			flush(flusher)
		case ev, ok := <-ch:
			if !ok || send(ev, false) != nil {
				return
			}
			if len(ch) == 0 {
				flush(flusher)
			}
		case <-ready:
			evs, ok := sub.Take()
			for _, ev := range evs {
				if send(ev, true) != nil {
					return
				}
			}
			if !ok {
				return // dropped: the client resumes after the last line
			}
			flush(flusher)
		}
	}
}

// nodeWatch is the fan-out of /instances/ by assigned node, started by
// the first agent's watch and fed until the store closes.
type nodeWatch struct {
	once sync.Once
	hub  *fanout.Hub
}

func (nw *nodeWatch) start(s *Server) *fanout.Hub {
	nw.once.Do(func() {
		nw.hub = fanout.New(fanout.Options{Store: s.opts.Store, Prefix: model.PrefixInstances, Log: s.log,
			Route: func(kv store.KV) string { return instanceNode(kv.Value) }, Group: instanceApp})
		go nw.hub.Run(context.Background())
	})
	return nw.hub
}

func (nw *nodeWatch) subscribe(ctx context.Context, s *Server, node string, after int64) (*fanout.Sub, error) {
	return nw.start(s).Subscribe(ctx, node, after)
}

// runsApp reports whether an instance of app ns/name is assigned to node.
func (nw *nodeWatch) runsApp(ctx context.Context, s *Server, node, ns, name string) (bool, error) {
	return nw.start(s).OwnsGroup(ctx, node, ns+"/"+name)
}

// instanceApp is "<ns>/<app>" of an instance key /instances/<ns>/<app>/<id>.
func instanceApp(key string) string {
	rest := strings.TrimPrefix(key, model.PrefixInstances)
	if i := strings.LastIndexByte(rest, '/'); i > 0 {
		return rest[:i]
	}
	return rest
}
