// Package remote is a store.Store over the server's /v1/store endpoints,
// so an agent on another host uses the store exactly as one in the
// server's process does. Requests carry the agent's client certificate
// (mutual TLS) or the admin token; the server confines agents to their
// own node's data.
//
// Watch survives the server going away: the stream is resumed from the
// last revision seen, with exponential backoff, and the channel stays
// open meanwhile; it is closed only when the resume revision has been
// compacted (the caller re-lists), or ctx ends, or the store is closed.
package remote

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Options configure a remote store.
type Options struct {
	// Server is the API's base URL (https://host:7070).
	Server string
	// TLS is the client TLS configuration (CA pool, client certificate).
	TLS *tls.Config
	// Token is a bearer token (the admin's); agents use certificates.
	Token string
	// RequestTimeout bounds every request but Watch (default 15s).
	RequestTimeout time.Duration
	// StallTimeout ends a watch stream that carried nothing, not even a
	// progress line, for this long (default 20s); it is then resumed.
	StallTimeout time.Duration
	// MaxBackoff caps the wait between watch reconnects (default 5s).
	MaxBackoff time.Duration
	// Session makes every call and watch of an agent go over one
	// long-lived connection (SessionPath) instead of HTTP requests: far
	// less work and memory on a server with thousands of agents. With a
	// server that has no sessions, HTTP requests are made.
	Session bool
	Log     *slog.Logger
}

// Store is a store.Store over HTTP.
type Store struct {
	o      Options
	mu     sync.RWMutex
	http   *http.Client // guarded by mu
	stream *http.Client // guarded by mu
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// heartbeat is the interval the server last asked agents to beat at
	// (model.HeaderHeartbeatInterval), 0 until it did.
	heartbeat atomic.Int64

	smu       sync.Mutex  // held while a session is opened
	sess      *session    // guarded by smu
	noSession bool        // the server has none: HTTP; guarded by smu
	noBeat    atomic.Bool // the server does not know the session's beat op
}

var _ store.Store = (*Store)(nil)

// HeartbeatInterval is how often the server last asked this client, an
// agent, to beat; 0 when it has not said.
func (s *Store) HeartbeatInterval() time.Duration { return time.Duration(s.heartbeat.Load()) }

// New makes a remote store; it does not contact the server.
func New(o Options) *Store {
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 20 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Server = strings.TrimRight(o.Server, "/")
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{o: o, ctx: ctx, cancel: cancel}
	s.Reconnect()
	return s
}

// Reconnect makes later requests use new connections, e.g. after the
// client certificate was renewed (a TLS connection keeps the certificate
// it was opened with). Streams already open continue on their own.
func (s *Store) Reconnect() {
	s.smu.Lock()
	if s.sess != nil {
		s.sess.retire()
		s.sess = nil
	}
	s.smu.Unlock()
	// The transport sets up its own copy of the TLS configuration.
	tr := &http.Transport{TLSClientConfig: s.o.TLS.Clone(), DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second, MaxIdleConnsPerHost: 8, IdleConnTimeout: 60 * time.Second, ForceAttemptHTTP2: true}
	s.mu.Lock()
	old := s.http
	s.http, s.stream = &http.Client{Transport: tr, Timeout: s.o.RequestTimeout}, &http.Client{Transport: tr}
	s.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
}

func (s *Store) clients() (plain, stream *http.Client) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.http, s.stream
}

// Error is a refusal by the server that maps to no store error (403 ...).
type Error struct {
	Status int
	model.APIError
}

func (e *Error) Error() string { return fmt.Sprintf("store server: %s (HTTP %d)", e.Message, e.Status) }

// IsForbidden reports whether err is a 403 from the server.
func IsForbidden(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusForbidden
}

func (s *Store) request(ctx context.Context, streaming bool, method, path string, q url.Values, body any) (*http.Response, error) {
	c, sc := s.clients()
	if streaming {
		c = sc
	}
	if s.ctx.Err() != nil {
		return nil, store.ErrClosed
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = strings.NewReader(string(b))
	}
	u := s.o.Server + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if s.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.Token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the berth server at %s: %w", s.o.Server, err)
	}
	setHeartbeat(&s.heartbeat, resp.Header.Get(model.HeaderHeartbeatInterval))
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return nil, responseError(resp.StatusCode, b)
}

// responseError is the error of a non-2xx answer with body b.
func responseError(status int, b []byte) error {
	var e model.APIError
	_ = json.Unmarshal(b, &e)
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return apiError(status, e)
}

// apiError maps the server's refusal to a store error or an *Error.
func apiError(status int, e model.APIError) error {
	switch e.Code {
	case CodeNotFound:
		return store.ErrNotFound
	case CodeConflict:
		return store.ErrConflict
	case CodeCompacted:
		return store.ErrCompacted
	}
	return &Error{Status: status, APIError: e}
}

func (s *Store) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := s.request(ctx, false, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// session returns the open agent session, opening one if needed; nil
// (and no error) when the Store makes HTTP requests instead.
func (s *Store) session(ctx context.Context) (*session, error) {
	if !s.o.Session {
		return nil, nil
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.ctx.Err() != nil {
		return nil, store.ErrClosed
	}
	if s.noSession {
		return nil, nil
	}
	if s.sess != nil && !s.sess.ended() {
		return s.sess, nil
	}
	ss, err := dialSession(ctx, s.o, &s.heartbeat)
	if errors.Is(err, errNoSessions) {
		s.o.Log.Info("the server has no agent sessions; using HTTP requests", "server", s.o.Server)
		s.noSession = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.sess = ss
	return ss, nil
}

// UsesSession reports whether the Store's calls go over an agent session
// that is open now.
func (s *Store) UsesSession() bool {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.sess != nil && !s.sess.ended()
}

// viaSession makes request f over the agent session; ok is false when
// the Store makes HTTP requests instead.
func (s *Store) viaSession(ctx context.Context, f Frame) (a Frame, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
	defer cancel()
	for {
		ss, err := s.session(ctx)
		if ss == nil || err != nil {
			return a, err != nil, err
		}
		a, err = ss.call(ctx, f, nil)
		if !errors.Is(err, errSessionGone) {
			return a, true, err
		}
	}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if a, ok, err := s.viaSession(ctx, Frame{Op: "get", Key: key}); ok {
		if err != nil || a.KV == nil {
			return store.KV{}, cmp.Or(err, errMissing("kv"))
		}
		return a.KV.ToKV(), nil
	}
	var kv KV
	err := s.call(ctx, http.MethodGet, "/v1/store/kv", url.Values{"key": {key}}, nil, &kv)
	return kv.ToKV(), err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	var lr ListResponse
	if a, ok, err := s.viaSession(ctx, Frame{Op: "list", Prefix: prefix}); ok {
		if err != nil || a.List == nil {
			return nil, 0, cmp.Or(err, errMissing("list"))
		}
		lr = *a.List
	} else if err := s.call(ctx, http.MethodGet, "/v1/store/list", url.Values{"prefix": {prefix}}, nil, &lr); err != nil {
		return nil, 0, err
	}
	out := make([]store.KV, len(lr.KVs))
	for i, kv := range lr.KVs {
		out[i] = kv.ToKV()
	}
	return out, lr.Rev, nil
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, t store.Txn) (int64, error) {
	wt := FromTxn(t)
	if a, ok, err := s.viaSession(ctx, Frame{Op: "txn", Txn: &wt}); ok {
		return a.Rev, err
	}
	var rr RevResponse
	err := s.call(ctx, http.MethodPost, "/v1/store/txn", nil, wt, &rr)
	return rr.Rev, err
}

// Rev implements store.Store.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if a, ok, err := s.viaSession(ctx, Frame{Op: "rev"}); ok {
		return a.Rev, err
	}
	var rr RevResponse
	err := s.call(ctx, http.MethodGet, "/v1/store/rev", nil, nil, &rr)
	return rr.Rev, err
}

// ErrNoBeat is Beat's answer when heartbeats cannot go alone: the Store
// makes HTTP requests, or the server predates the beat op. The caller
// writes its node instead.
var ErrNoBeat = fmt.Errorf("remote: this server takes heartbeats as node writes only: %w", errors.ErrUnsupported)

// Beat tells the server that the node object at key is unchanged since
// modRev and its agent alive: a heartbeat without the object, for the
// server to keep in memory. store.ErrConflict means the node changed
// (or the server stores every beat): write the node instead.
func (s *Store) Beat(ctx context.Context, key string, modRev int64) error {
	if s.noBeat.Load() {
		return ErrNoBeat
	}
	_, ok, err := s.viaSession(ctx, Frame{Op: "beat", Key: key, Rev: modRev})
	if !ok {
		return ErrNoBeat
	}
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusBadRequest && e.Code == "invalid" {
		s.noBeat.Store(true) // an older server: unknown op
		return ErrNoBeat
	}
	return err
}

// errMissing: a session answer without the field it must carry.
func errMissing(field string) error {
	return fmt.Errorf("agent session: the server's answer has no %s", field)
}

// Close ends every watch; later calls fail with store.ErrClosed.
func (s *Store) Close() error {
	s.cancel()
	s.smu.Lock()
	if s.sess != nil {
		s.sess.fail(store.ErrClosed)
	}
	s.smu.Unlock()
	s.wg.Wait()
	return nil
}
