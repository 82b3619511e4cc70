package remote

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// errNoSessions: the server does not know SessionPath (it predates
// sessions); the Store then makes HTTP requests.
var errNoSessions = errors.New("the server has no agent sessions")

// errStalled ends a session on which a watch heard nothing, not even a
// progress line, for Options.StallTimeout.
var errStalled = errors.New("agent session stalled")

// session is one agent session (SessionPath): every call of a Store and
// its watches over one TLS connection, read by one goroutine. Calls and
// watches are told apart by frame ID.
type session struct {
	conn      net.Conn
	br        *bufio.Reader
	timeout   time.Duration
	heartbeat *atomic.Int64 // the Store's

	wmu sync.Mutex // one write at a time

	mu      sync.Mutex
	next    uint64
	calls   map[uint64]chan Frame
	streams map[uint64]*sessionStream
	retired bool  // close once no call is in flight
	err     error // why it ended, once it has
	done    chan struct{}
}

// dialSession opens a session: a TLS connection (ALPN http/1.1) and the
// upgrade of GET SessionPath.
func dialSession(ctx context.Context, o Options, heartbeat *atomic.Int64) (*session, error) {
	u, err := url.Parse(o.Server)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	ctx, cancel := context.WithTimeout(ctx, o.RequestTimeout)
	defer cancel()
	nd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second}
	var conn net.Conn
	if u.Scheme == "https" {
		cfg := o.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg.NextProtos = []string{"http/1.1"} // an upgrade is HTTP/1.1 only
		conn, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach the berth server at %s: %w", o.Server, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	req, _ := http.NewRequest(http.MethodGet, o.Server+SessionPath, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", SessionProtocol)
	br := bufio.NewReaderSize(conn, 16<<10)
	err = req.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the berth server at %s: %w", o.Server, err)
	}
	setHeartbeat(heartbeat, resp.Header.Get(model.HeaderHeartbeatInterval))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode == http.StatusNotFound {
			return nil, errNoSessions
		}
		return nil, responseError(resp.StatusCode, b)
	}
	ss := &session{conn: conn, br: br, timeout: o.RequestTimeout, heartbeat: heartbeat,
		calls: map[uint64]chan Frame{}, streams: map[uint64]*sessionStream{}, done: make(chan struct{})}
	go ss.read()
	return ss, nil
}

// setHeartbeat records the interval the server asked agents to beat at.
func setHeartbeat(heartbeat *atomic.Int64, v string) {
	if v == "" {
		return
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		heartbeat.Store(int64(d))
	}
}

// read hands every frame to its call or watch until the session ends.
func (ss *session) read() {
	for {
		line, err := ReadFrameLine(ss.br, MaxSessionFrame)
		if err != nil {
			ss.fail(err)
			return
		}
		var f Frame
		if err := json.Unmarshal(line, &f); err != nil {
			ss.fail(fmt.Errorf("agent session: bad frame from the server: %w", err))
			return
		}
		ss.mu.Lock()
		if ch, ok := ss.calls[f.ID]; ok && f.Status != 0 {
			delete(ss.calls, f.ID)
			ch <- f // buffered: never blocks
		} else if st := ss.streams[f.ID]; st != nil {
			st.push(f.Lines, f.End)
			if f.End {
				delete(ss.streams, f.ID)
			}
		}
		idle := ss.retired && len(ss.calls) == 0
		ss.mu.Unlock()
		if idle {
			ss.fail(errors.New("agent session retired"))
			return
		}
	}
}

// fail ends the session (once): calls and watches on it return err.
func (ss *session) fail(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.err != nil {
		return
	}
	ss.err = fmt.Errorf("agent session: %w", err)
	close(ss.done)
	ss.conn.Close()
}

// ended reports whether the session is over.
func (ss *session) ended() bool {
	select {
	case <-ss.done:
		return true
	default:
		return false
	}
}

// retire ends the session once no call is in flight (Store.Reconnect):
// its watches then resume on a new one.
func (ss *session) retire() {
	ss.mu.Lock()
	ss.retired = true
	idle := len(ss.calls) == 0
	ss.mu.Unlock()
	if idle {
		ss.fail(errors.New("agent session retired"))
	}
}

func (ss *session) send(f Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = ss.conn.SetWriteDeadline(time.Now().Add(ss.timeout))
	if _, err := ss.conn.Write(b); err != nil {
		ss.fail(err)
		return ss.err
	}
	return nil
}

// call sends request f and waits for its answer. With st set, f is a
// watch and st receives the lines that follow the answer.
func (ss *session) call(ctx context.Context, f Frame, st *sessionStream) (Frame, error) {
	ch := make(chan Frame, 1)
	ss.mu.Lock()
	if ss.err != nil || ss.retired {
		ss.mu.Unlock()
		return Frame{}, errSessionGone
	}
	ss.next++
	f.ID = ss.next
	ss.calls[f.ID] = ch
	if st != nil {
		st.ss, st.id = ss, f.ID
		ss.streams[f.ID] = st
	}
	ss.mu.Unlock()
	if err := ss.send(f); err != nil {
		return Frame{}, err
	}
	select {
	case a := <-ch:
		setHeartbeat(ss.heartbeat, a.Heartbeat)
		if err := frameError(a); err != nil {
			ss.forget(f.ID)
			return a, err
		}
		return a, nil
	case <-ctx.Done():
		ss.forget(f.ID)
		return Frame{}, ctx.Err()
	case <-ss.done:
		select {
		case a := <-ch: // answered just before the end
			return a, frameError(a)
		default:
			return Frame{}, ss.err
		}
	}
}

// errSessionGone: the session ended before the call was sent; the Store
// opens another.
var errSessionGone = errors.New("agent session ended")

// forget drops call id (and its watch) whose answer is no longer awaited.
func (ss *session) forget(id uint64) {
	ss.mu.Lock()
	delete(ss.calls, id)
	delete(ss.streams, id)
	ss.mu.Unlock()
}

// frameError is the error of a non-2xx answer, as responseError.
func frameError(f Frame) error {
	if f.Status/100 == 2 {
		return nil
	}
	e := model.APIError{Message: fmt.Sprintf("HTTP %d", f.Status)}
	if f.Error != nil {
		e = *f.Error
	}
	return apiError(f.Status, e)
}

// sessionStream is one watch of a session.
type sessionStream struct {
	ss   *session
	id   uint64
	ctx  context.Context
	mu   sync.Mutex
	q    []WatchLine
	end  bool
	wake chan struct{} // 1 slot
}

func newSessionStream(ctx context.Context) *sessionStream {
	return &sessionStream{ctx: ctx, wake: make(chan struct{}, 1)}
}

func (st *sessionStream) push(lines []WatchLine, end bool) {
	st.mu.Lock()
	st.q = append(st.q, lines...)
	st.end = st.end || end
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// Next implements stream.
func (st *sessionStream) Next() ([]WatchLine, error) {
	for {
		st.mu.Lock()
		lines, end := st.q, st.end
		st.q = nil
		st.mu.Unlock()
		if len(lines) > 0 {
			return lines, nil
		}
		if end {
			return nil, io.EOF
		}
		select {
		case <-st.wake:
		case <-st.ss.done:
			select {
			case <-st.wake: // lines that came before the end
				continue
			default:
			}
			return nil, st.ss.err
		case <-st.ctx.Done():
			return nil, st.ctx.Err()
		}
	}
}

// Close implements stream: the server is told to end the watch.
func (st *sessionStream) Close() {
	st.ss.forget(st.id)
	if !st.ss.ended() {
		go func() { _ = st.ss.send(Frame{ID: st.id, Op: "cancel"}) }()
	}
}

// Abort implements stream: a watch that stalled means the session is
// dead (the server sends every watch a progress line every few
// seconds), so every call and watch on it starts over on a new one.
func (st *sessionStream) Abort() { st.ss.fail(errStalled) }
