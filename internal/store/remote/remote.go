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
	"bufio"
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
	"strconv"
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
	Log        *slog.Logger
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
	tr := &http.Transport{TLSClientConfig: s.o.TLS, DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second}).DialContext,
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
	if v := resp.Header.Get(model.HeaderHeartbeatInterval); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			s.heartbeat.Store(int64(d))
		}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e model.APIError
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(b, &e)
	switch e.Code {
	case CodeNotFound:
		return nil, store.ErrNotFound
	case CodeConflict:
		return nil, store.ErrConflict
	case CodeCompacted:
		return nil, store.ErrCompacted
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return nil, &Error{Status: resp.StatusCode, APIError: e}
}

func (s *Store) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := s.request(ctx, false, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	var kv KV
	err := s.call(ctx, http.MethodGet, "/v1/store/kv", url.Values{"key": {key}}, nil, &kv)
	return kv.ToKV(), err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	var lr ListResponse
	if err := s.call(ctx, http.MethodGet, "/v1/store/list", url.Values{"prefix": {prefix}}, nil, &lr); err != nil {
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
	var rr RevResponse
	err := s.call(ctx, http.MethodPost, "/v1/store/txn", nil, FromTxn(t), &rr)
	return rr.Rev, err
}

// Rev implements store.Store.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	var rr RevResponse
	err := s.call(ctx, http.MethodGet, "/v1/store/rev", nil, nil, &rr)
	return rr.Rev, err
}

// Close ends every watch; later calls fail with store.ErrClosed.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Watch implements store.Store. The first connection is made before it
// returns, so a compacted afterRev fails here.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	body, cancel, err := s.openWatch(ctx, prefix, afterRev)
	if err != nil {
		return nil, err
	}
	ch := make(chan store.Event, 1024)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		s.watchLoop(ctx, prefix, afterRev, body, cancel, ch)
	}()
	return ch, nil
}

// openWatch starts one stream and reads its first (progress) line.
func (s *Store) openWatch(ctx context.Context, prefix string, after int64) (*bufio.Reader, context.CancelFunc, error) {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	q := url.Values{"prefix": {prefix}, "after": {strconv.FormatInt(after, 10)}}
	timer := time.AfterFunc(s.o.RequestTimeout, cancel)
	resp, err := s.request(sctx, true, http.MethodGet, "/v1/store/watch", q, nil)
	if err != nil {
		timer.Stop()
		stop()
		cancel()
		if s.ctx.Err() != nil {
			return nil, nil, store.ErrClosed
		}
		return nil, nil, err
	}
	context.AfterFunc(sctx, func() { resp.Body.Close() })
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	_, err = rd.ReadBytes('\n')
	timer.Stop()
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("watch %s: %w", prefix, err)
	}
	return rd, func() { stop(); cancel() }, nil
}

func (s *Store) watchLoop(ctx context.Context, prefix string, after int64, rd *bufio.Reader, cancel context.CancelFunc,
	ch chan<- store.Event) {
	backoff := 100 * time.Millisecond
	pos := &streamPos{done: after}
	for {
		ok := s.readStream(ctx, rd, cancel, pos, ch)
		cancel()
		if !ok || ctx.Err() != nil || s.ctx.Err() != nil {
			return
		}
		for {
			var err error
			rd, cancel, err = s.openWatch(ctx, prefix, pos.done)
			if err == nil {
				backoff = 100 * time.Millisecond
				break
			}
			if errors.Is(err, store.ErrCompacted) || errors.Is(err, store.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.o.Log.Warn("store watch: server unreachable, retrying", "prefix", prefix, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.o.MaxBackoff)
		}
	}
}

// streamPos is how far a watch got, kept across its streams. A stream may
// break between two events of one revision (a Txn of many keys), so it
// resumes after the last revision known complete (done) and skips the
// events of the partly forwarded one (cur) that were forwarded already.
type streamPos struct {
	done int64           // every event up to done was forwarded
	cur  int64           // revision being forwarded (> done), or 0
	keys map[string]bool // keys of cur forwarded
}

// complete records that every event up to rev was forwarded.
func (p *streamPos) complete(rev int64) {
	if p.cur != 0 && p.cur <= rev {
		p.cur, p.keys = 0, nil
	}
	p.done = max(p.done, rev)
}

// seen reports whether ev was forwarded already (a replay of the partly
// forwarded revision) and otherwise records it as forwarded.
func (p *streamPos) seen(ev store.Event) bool {
	rev := ev.KV.ModRev
	switch {
	case rev <= p.done:
		return true
	case rev == p.cur:
		if p.keys[ev.KV.Key] {
			return true
		}
	default: // a later revision: the one before is complete
		p.complete(p.cur)
		p.cur, p.keys = rev, map[string]bool{}
	}
	p.keys[ev.KV.Key] = true
	return false
}

// readStream forwards events until the stream breaks or stalls,
// advancing pos. It returns false if the watch must end.
func (s *Store) readStream(ctx context.Context, rd *bufio.Reader, cancel context.CancelFunc, pos *streamPos, ch chan<- store.Event) bool {
	stall := time.AfterFunc(s.o.StallTimeout, cancel)
	defer stall.Stop()
	for {
		b, err := rd.ReadBytes('\n')
		if err != nil {
			return true
		}
		stall.Reset(s.o.StallTimeout)
		var l WatchLine
		if json.Unmarshal(b, &l) != nil {
			continue
		}
		switch l.Type {
		case "progress":
			// The server may send one while a revision's events are still
			// on their way (it had forwarded some of them): only the
			// revisions before the progress one are surely complete.
			pos.complete(l.Rev - 1)
			continue
		case "put", "delete":
		default:
			continue
		}
		ev := store.Event{Type: store.EventPut, KV: l.KV.ToKV()}
		if l.Type == "delete" {
			ev.Type = store.EventDelete
		}
		if pos.seen(ev) {
			continue
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
}
