package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/apps"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// listInstances lists instances, filtered by ?namespace, ?app and ?node.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := model.PrefixInstances + namespace(r) + "/"
	if app := q.Get("app"); app != "" {
		prefix = model.InstancePrefix(namespace(r), app)
	}
	insts, err := store.ListValues[model.Instance](r.Context(), s.opts.Store, prefix)
	if err != nil {
		s.fail(w, err)
		return
	}
	node := q.Get("node")
	out := insts[:0]
	for _, in := range insts {
		if node == "" || in.Node == node {
			out = append(out, in)
		}
	}
	apps.SortInstances(out)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := store.ListValues[model.Node](r.Context(), s.opts.Store, model.PrefixNodes)
	if err != nil {
		s.fail(w, err)
		return
	}
	for i := range nodes {
		nodes[i].LastHeartbeat = s.opts.Liveness.Last(nodes[i].Name, nodes[i].LastHeartbeat)
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	o, err := store.GetJSON[model.Node](r.Context(), s.opts.Store, model.NodeKey(r.PathValue("name")))
	if err != nil {
		s.fail(w, err)
		return
	}
	o.Value.LastHeartbeat = s.opts.Liveness.Last(o.Value.Name, o.Value.LastHeartbeat)
	writeJSON(w, http.StatusOK, o.Value)
}

// listEvents returns events as a JSON array, or with ?follow=true streams
// them as newline-delimited JSON, first the last ?limit (default 50).
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := events.Filter{Namespace: namespace(r), App: q.Get("app"), Instance: q.Get("instance"), Node: q.Get("node")}
	if q.Get("allNamespaces") == "true" {
		f.Namespace = ""
	}
	follow := q.Get("follow") == "true"
	limit := 0
	if follow {
		limit = 50
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			badRequest(w, "limit", "must be a non-negative number")
			return
		}
		limit = n
	}
	list, rev, err := events.List(r.Context(), s.opts.Store, f, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !follow {
		if list == nil {
			list = []model.Event{}
		}
		writeJSON(w, http.StatusOK, list)
		return
	}
	ch, err := s.opts.Store.Watch(r.Context(), model.PrefixEvents, rev)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	for _, e := range list {
		_ = enc.Encode(e)
	}
	flush(flusher)
	for ev := range ch {
		if ev.Type != store.EventPut {
			continue
		}
		e, err := events.Decode(ev.KV)
		if err != nil || !f.Match(&e) {
			continue
		}
		if enc.Encode(e) != nil {
			return
		}
		flush(flusher)
	}
}

// startStream answers 200 with an NDJSON stream of watch lines: its
// encoder, flusher (nil if the writer cannot flush) and the ticker of its
// progress lines (stop it).
func startStream(w http.ResponseWriter) (*json.Encoder, http.Flusher, *time.Ticker) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	return json.NewEncoder(w), flusher, time.NewTicker(watchProgressEvery)
}

func flush(f http.Flusher) {
	if f != nil {
		f.Flush()
	}
}

// appLogs streams the logs of an app's instances (or ?instance=ID), each
// line prefixed with the instance ID when there are several.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request) {
	if s.opts.Logs == nil {
		writeError(w, http.StatusNotImplemented, model.APIError{Code: "internal", Message: "this server has no log source"})
		return
	}
	q := r.URL.Query()
	ns, name := namespace(r), r.PathValue("name")
	insts, err := s.apps.AppInstances(r.Context(), ns, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	tail := 0
	if t := q.Get("tail"); t != "" {
		if tail, err = strconv.Atoi(t); err != nil || tail < 0 {
			badRequest(w, "tail", "must be a non-negative number")
			return
		}
	}
	follow := q.Get("follow") == "true"
	var selected []model.Instance
	for _, in := range insts {
		if (q.Get("instance") == "" || q.Get("instance") == in.ID) && in.Node != "" && in.Status.ContainerID != "" {
			selected = append(selected, in)
		}
	}
	if q.Get("instance") != "" && len(selected) == 0 {
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found",
			Message: fmt.Sprintf("instance %q of app %s has no logs (unknown or not started)", q.Get("instance"), name)})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	out := &lockedWriter{w: w}
	out.f, _ = w.(http.Flusher)
	var wg sync.WaitGroup
	for _, in := range selected {
		rc, err := s.opts.Logs.InstanceLogs(r.Context(), in, follow, tail)
		if err != nil {
			out.line(in.ID, "[berth] logs unavailable: "+err.Error(), len(selected) > 1)
			continue
		}
		wg.Add(1)
		go func(id string, rc io.ReadCloser) {
			defer wg.Done()
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			for sc.Scan() {
				out.line(id, sc.Text(), len(selected) > 1)
			}
		}(in.ID, rc)
		if !follow {
			wg.Wait() // keep one instance's lines together
		}
	}
	wg.Wait()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
	f  http.Flusher
}

func (l *lockedWriter) line(id, text string, prefix bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prefix {
		fmt.Fprintf(l.w, "[%s] %s\n", id, text)
	} else {
		fmt.Fprintln(l.w, text)
	}
	flush(l.f)
}
