package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/fanout"
	"github.com/berth-dev/berth/internal/store/remote"
)

// Agent sessions: one long-lived connection per agent carries every
// store call it makes and its watches' events (docs/cluster.md, "Agent
// sessions"). It is an HTTP/1.1 upgrade of GET /v1/agent/session on the
// API port, so it has the agent's mutual-TLS identity, checked again on
// every call as a request's is. One goroutine per session reads frames
// and waits while a shared worker (Server.frameWorkers) decodes and
// answers each; a Txn, which waits for its commit, goes on without the
// session waiting; watch events are written by a few writers that all
// sessions share (sessionHub), woken by the fan-out.

const (
	// sessionWriters write watch events and progress lines of all
	// sessions.
	sessionWriters = 4
	// sessionWriteTimeout ends a session whose agent does not read.
	sessionWriteTimeout = 10 * time.Second
	// sessionIdleTimeout ends a session that sent nothing for this long
	// (agents beat far more often), or for three heartbeat intervals in
	// a cluster so large that they are longer.
	sessionIdleTimeout = 2 * time.Minute
	// maxSessionRequest bounds one frame from an agent (a status Txn).
	maxSessionRequest = 8 * maxBodyBytes
	// sessionReadBuffer buffers an agent's frames as they are read (a
	// heartbeat is ≈1 KB; longer frames are read in pieces).
	sessionReadBuffer = 1 << 10
)

func (s *Server) sessionRoutes() {
	s.mux.HandleFunc("GET "+remote.SessionPath, s.nodeAuth(s.agentSession))
}

// agentSession upgrades the request's connection and serves it until it
// breaks, the agent leaves or the server stops.
func (s *Server) agentSession(w http.ResponseWriter, r *http.Request) {
	z := s.authz(r)
	if z.admin {
		badRequest(w, "identity", "sessions are for agents (a node's client certificate); use the /v1/store endpoints")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), remote.SessionProtocol) {
		writeError(w, http.StatusUpgradeRequired, model.APIError{Code: "upgrade_required",
			Message: "GET " + remote.SessionPath + " must ask to upgrade to " + remote.SessionProtocol})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusHTTPVersionNotSupported, model.APIError{Code: "http_version",
			Message: "an agent session needs HTTP/1.1 (offer ALPN http/1.1): " + err.Error()})
		return
	}
	// The handler returns and net/http lets go of the connection's
	// buffers and request (≈13 KB an agent); the session goes on in a
	// goroutine of its own, until it breaks or CloseSessions.
	br := bufio.NewReaderSize(conn, sessionReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 { // sent before the answer: not by berth agents
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), sessionReadBuffer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	as := &agentSession{s: s, z: z, leaf: r.TLS.VerifiedChains[0][0], conn: conn, br: br, ctx: ctx, cancel: cancel,
		watches: map[uint64]*sessionWatch{}}
	_ = conn.SetDeadline(time.Time{})
	hello := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + remote.SessionProtocol + "\r\n" +
		model.HeaderHeartbeatInterval + ": " + s.heartbeatInterval() + "\r\n\r\n"
	if as.writeRaw([]byte(hello)) != nil {
		return
	}
	s.sessions.add(as)
	go func() {
		defer as.close()
		as.serve()
	}()
}

// CloseSessions ends every agent session (agents open new ones): for
// http.Server.RegisterOnShutdown, as Shutdown does not know of them.
func (s *Server) CloseSessions() { s.sessions.closeAll() }

// agentSession is one agent's session.
type agentSession struct {
	s      *Server
	z      nodeAuthz
	leaf   *x509.Certificate
	conn   net.Conn
	br     *bufio.Reader
	ctx    context.Context
	cancel context.CancelFunc

	wmu    sync.Mutex  // one write to conn at a time
	fmu    sync.Mutex  // one flush of watch events at a time, in order
	queued atomic.Bool // on the writers' queue

	mu      sync.Mutex
	watches map[uint64]*sessionWatch
}

// sessionWatch is one watch of a session: the node's instances through
// the fan-out (sub), or any other prefix through a store watch whose
// events a goroutine queues in evs.
type sessionWatch struct {
	id     uint64
	sub    *fanout.Sub
	evs    []store.Event // guarded by agentSession.mu
	ended  bool          // the store watch ended; guarded by agentSession.mu
	cancel func()        // ends the subscription or store watch
	// last is the revision of the newest line written (flushes only).
	last     int64
	progress atomic.Bool // a progress line is due
}

// end ends the session: its calls' context, its watches and its
// connection (the reader then returns and close runs).
func (as *agentSession) end() {
	as.cancel()
	as.conn.Close()
}

func (as *agentSession) close() {
	as.end()
	as.s.sessions.remove(as)
}

// serve reads and handles frames until the connection breaks.
func (as *agentSession) serve() {
	for {
		idle := max(sessionIdleTimeout, 3*model.HeartbeatInterval(as.s.opts.State.Nodes.Len()))
		_ = as.conn.SetReadDeadline(time.Now().Add(idle))
		line, err := remote.ReadFrameLine(as.br, maxSessionRequest)
		if err != nil {
			return
		}
		// The line stays valid until the next read, after Do.
		var broken bool
		as.s.frameWorkers.Do(func() { broken = !as.handleLine(line) })
		if broken {
			return // a peer that breaks framing is not worth resyncing with
		}
	}
}

// handleLine decodes and handles one frame; false if it is not a frame.
func (as *agentSession) handleLine(line []byte) bool {
	var f remote.Frame
	if err := json.Unmarshal(line, &f); err != nil {
		as.reply(0, nil, refuse(http.StatusBadRequest, "invalid", "session frame: "+err.Error()))
		return false
	}
	as.handle(f)
	return true
}

func (as *agentSession) handle(f remote.Frame) {
	if f.Op == "cancel" {
		as.endWatch(f.ID)
		return
	}
	// The certificate may have been revoked (node rm) or replaced since
	// the session opened.
	if _, err := as.s.identifyNode(as.ctx, as.leaf); err != nil {
		as.reply(f.ID, nil, refuse(http.StatusUnauthorized, "unauthorized", err.Error()))
		as.end()
		return
	}
	switch f.Op {
	case "get":
		kv, err := as.s.getKV(as.ctx, as.z, f.Key)
		as.reply(f.ID, &remote.Frame{KV: &kv}, err)
	case "list":
		l, err := as.s.listKVs(as.ctx, as.z, f.Prefix)
		as.reply(f.ID, &remote.Frame{List: &l}, err)
	case "rev":
		rev, err := as.s.opts.Store.Rev(as.ctx)
		as.reply(f.ID, &remote.Frame{Rev: rev}, err)
	case "txn":
		if f.Txn == nil {
			as.reply(f.ID, nil, refuse(http.StatusBadRequest, "invalid", "txn: missing"))
			return
		}
		as.s.frameWorkers.Go(func() { // it waits for the commit
			rev, err := as.s.txnAs(as.ctx, as.z, *f.Txn)
			as.reply(f.ID, &remote.Frame{Rev: rev, Heartbeat: as.s.heartbeatInterval()}, err)
		})
	case "beat":
		as.reply(f.ID, &remote.Frame{Rev: f.Rev, Heartbeat: as.s.heartbeatInterval()}, as.z.beat(as.ctx, f.Key, f.Rev))
	case "watch":
		as.watch(f)
	default:
		as.reply(f.ID, nil, refuse(http.StatusBadRequest, "invalid", fmt.Sprintf("op: %q is not get, list, rev, txn, beat, watch or cancel", f.Op)))
	}
}

// reply answers request id with a (Status 200) or with err's refusal.
func (as *agentSession) reply(id uint64, a *remote.Frame, err error) {
	out := remote.Frame{}
	if a != nil {
		out = *a
	}
	out.ID, out.Status = id, http.StatusOK
	if err != nil {
		e, ok := storeRefusal(err)
		if !ok {
			if as.ctx.Err() != nil {
				return // the session ended: nobody to tell
			}
			as.s.log.Error("agent session", "node", as.z.node, "err", err)
			e = &opError{http.StatusInternalServerError, model.APIError{Code: "internal", Message: err.Error()}}
		}
		out = remote.Frame{ID: id, Status: e.status, Error: &e.e}
	}
	as.write(out)
}

var frameBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// write sends frames in one write; a failure ends the session.
func (as *agentSession) write(frames ...remote.Frame) {
	if len(frames) == 0 {
		return
	}
	buf := frameBufs.Get().(*bytes.Buffer)
	defer frameBufs.Put(buf)
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	for _, f := range frames {
		if err := enc.Encode(f); err != nil {
			as.s.log.Error("agent session: encode", "node", as.z.node, "err", err)
			as.end()
			return
		}
	}
	_ = as.writeRaw(buf.Bytes())
}

func (as *agentSession) writeRaw(b []byte) error {
	as.wmu.Lock()
	defer as.wmu.Unlock()
	_ = as.conn.SetWriteDeadline(time.Now().Add(sessionWriteTimeout))
	_, err := as.conn.Write(b)
	if err != nil {
		as.end()
	}
	return err
}

// watch starts watch f.ID and answers it; its events follow in frames
// written by the session writers.
func (as *agentSession) watch(f remote.Frame) {
	if f.After < 0 {
		as.reply(f.ID, nil, refuse(http.StatusBadRequest, "invalid", "after: must be a revision (a non-negative number)"))
		return
	}
	if msg := as.z.canList(f.Prefix); msg != "" {
		as.reply(f.ID, nil, refuseForbidden(msg))
		return
	}
	w := &sessionWatch{id: f.ID, last: f.After}
	if f.Prefix == model.PrefixInstances {
		sub, err := as.s.nodeWatch.start(as.s).SubscribeFunc(as.ctx, as.z.node, f.After, as.kick)
		if errors.Is(err, fanout.ErrTooOld) {
			// As storeWatch: the agent lists again from the state view.
			err = fmt.Errorf("%w: %w", store.ErrCompacted, err)
		}
		if err != nil {
			as.reply(f.ID, nil, err)
			return
		}
		w.sub, w.cancel = sub, sub.Close
	} else {
		wctx, cancel := context.WithCancel(as.ctx)
		ch, err := as.s.opts.Store.Watch(wctx, f.Prefix, f.After)
		if err != nil {
			cancel()
			as.reply(f.ID, nil, err)
			return
		}
		w.cancel = cancel
		go as.forward(w, ch)
	}
	// Answered before it is registered, so no event of it precedes the
	// answer; what came meanwhile waits in the watch and is kicked out.
	as.reply(f.ID, &remote.Frame{Rev: f.After}, nil)
	as.mu.Lock()
	as.watches[f.ID] = w
	as.mu.Unlock()
	as.kick()
}

// forward queues a store watch's events for the writers.
func (as *agentSession) forward(w *sessionWatch, ch <-chan store.Event) {
	for ev := range ch {
		as.mu.Lock()
		w.evs = append(w.evs, ev)
		as.mu.Unlock()
		as.kick()
	}
	as.mu.Lock()
	w.ended = true
	as.mu.Unlock()
	as.kick()
}

func (as *agentSession) endWatch(id uint64) {
	as.mu.Lock()
	w := as.watches[id]
	delete(as.watches, id)
	as.mu.Unlock()
	if w != nil {
		w.cancel()
	}
}

// kick puts the session on the writers' queue (once until flushed). It
// is called under the fan-out's lock, so it does not block.
func (as *agentSession) kick() {
	if as.queued.CompareAndSwap(false, true) {
		as.s.sessions.push(as)
	}
}

// flush writes what every watch of the session has waiting, in one
// write.
func (as *agentSession) flush() {
	as.fmu.Lock()
	defer as.fmu.Unlock()
	as.queued.Store(false)
	as.mu.Lock()
	ws := slices.Collect(maps.Values(as.watches))
	as.mu.Unlock()
	var frames []remote.Frame
	for _, w := range ws {
		f, ok := as.take(w)
		if !ok {
			continue
		}
		frames = append(frames, f)
		if f.End {
			as.endWatch(w.id)
		}
	}
	as.write(frames...)
}

// take makes the frame of what w has waiting; ok is false for none.
func (as *agentSession) take(w *sessionWatch) (f remote.Frame, ok bool) {
	var evs []store.Event
	live := true
	if w.sub != nil {
		evs, live = w.sub.Take()
	} else {
		as.mu.Lock()
		evs, w.evs, live = w.evs, nil, !w.ended
		as.mu.Unlock()
	}
	progress := w.progress.Swap(false)
	if len(evs) == 0 && live && !progress {
		return f, false
	}
	f = remote.Frame{ID: w.id, End: !live, Lines: make([]remote.WatchLine, 0, len(evs)+1)}
	for _, ev := range evs {
		w.last = ev.KV.ModRev
		line := remote.WatchLine{Type: "put", KV: remote.FromKV(ev.KV)}
		if ev.Type == store.EventDelete {
			line.Type = "delete"
		} else if w.sub == nil && !as.z.visible(ev.KV.Key, ev.KV.Value) {
			continue // the progress line carries its revision
		}
		f.Lines = append(f.Lines, line)
	}
	if progress && live {
		if w.sub != nil {
			if rev, ok := w.sub.Rev(); ok {
				w.last = max(w.last, rev)
			}
		}
		f.Lines = append(f.Lines, remote.WatchLine{Type: "progress", Rev: w.last})
	}
	return f, true
}

// sessionHub holds the open sessions, the writers' queue and the timer
// of progress lines.
type sessionHub struct {
	once  sync.Once
	mu    sync.Mutex
	cond  *sync.Cond
	all   map[*agentSession]struct{}
	queue []*agentSession
}

func (h *sessionHub) add(as *agentSession) {
	h.once.Do(func() {
		h.cond = sync.NewCond(&h.mu)
		h.all = map[*agentSession]struct{}{}
		for range sessionWriters {
			go h.writer()
		}
		go h.progressLoop()
	})
	h.mu.Lock()
	h.all[as] = struct{}{}
	h.mu.Unlock()
}

func (h *sessionHub) closeAll() {
	for _, as := range h.list() {
		as.end()
	}
}

// list returns the open sessions.
func (h *sessionHub) list() []*agentSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Keys(h.all))
}

func (h *sessionHub) remove(as *agentSession) {
	h.mu.Lock()
	delete(h.all, as)
	h.mu.Unlock()
}

func (h *sessionHub) push(as *agentSession) {
	h.mu.Lock()
	h.queue = append(h.queue, as)
	h.mu.Unlock()
	h.cond.Signal()
}

func (h *sessionHub) writer() {
	for {
		h.mu.Lock()
		for len(h.queue) == 0 {
			h.cond.Wait()
		}
		as := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		h.mu.Unlock()
		if as.ctx.Err() == nil {
			as.flush()
		}
	}
}

// progressLoop marks a progress line due on every watch every
// watchProgressEvery, so agents tell a quiet session from a dead one.
func (h *sessionHub) progressLoop() {
	for range time.Tick(watchProgressEvery) {
		for _, as := range h.list() {
			as.mu.Lock()
			for _, w := range as.watches {
				w.progress.Store(true)
			}
			as.mu.Unlock()
			as.kick()
		}
	}
}
