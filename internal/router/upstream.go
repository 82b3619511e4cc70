package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// The lean client: requests that can be replayed (idempotent, no body,
// not an Upgrade) go to the instance through h1Client instead of
// http.Transport. http.Transport runs a dial goroutine and a read and a
// write goroutine per connection and hands every request and response
// between them over channels; when an upstream closes every connection
// (busybox httpd does), that is several goroutine wake-ups per request,
// most of the router's CPU after the syscalls. h1Client dials, writes and
// reads in the handler's goroutine, and keeps its own idle connections per
// upstream (upstream.idle). Everything else (request bodies, WebSocket)
// still takes http.Transport.

const (
	// maxResponseHeaderBytes bounds an upstream's response header, as
	// http.Transport's default does.
	maxResponseHeaderBytes = 10 << 20
	// maxIdlePerUpstream is how many idle connections one upstream keeps.
	maxIdlePerUpstream = 256
	// idleConnTimeout closes connections idle that long.
	idleConnTimeout = 90 * time.Second
	// staleRetries bounds retries of a request whose reused idle
	// connection turned out closed by the instance.
	staleRetries = 2
	// max1xxResponses bounds the 1xx responses before the final one (as
	// http.Transport does).
	max1xxResponses = 5
)

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// h1Client speaks HTTP/1.1 to instances for replayable requests.
type h1Client struct {
	dialer net.Dialer
}

func newH1Client(dialTimeout time.Duration) *h1Client {
	// No TCP keep-alive probes: idle connections are closed after
	// idleConnTimeout and a dead one is detected (and the request
	// replayed) on reuse; it saves four setsockopt calls per connection.
	return &h1Client{dialer: net.Dialer{Timeout: dialTimeout, KeepAlive: -1}}
}

// leanEligible reports whether out can take the lean client: it can be
// sent again on a fresh connection if a reused one turns out closed.
func leanEligible(out *http.Request) bool {
	return idempotent(out.Method) && (out.Body == nil || out.Body == http.NoBody) &&
		out.Header.Get("Upgrade") == "" && out.URL.Scheme == "http"
}

// roundTrip sends req to up on an idle connection or a new one. A dial
// failure is a *dialError (the caller tries another instance).
func (c *h1Client) roundTrip(up *upstream, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for stale := 0; ; stale++ {
		var pc *h1Conn
		if stale < staleRetries {
			pc = up.takeIdle(time.Now())
		}
		reused := pc != nil
		if !reused {
			conn, err := c.dialer.DialContext(ctx, "tcp", up.addr)
			if err != nil {
				return nil, &dialError{err}
			}
			pc = newH1Conn(conn, up)
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		pc.close()
		// The instance closed an idle connection before it saw the
		// request; the request is replayable, so send it on another.
		if !reused || ctx.Err() != nil {
			return nil, err
		}
	}
}

// h1Conn is one HTTP/1.1 connection to an instance.
type h1Conn struct {
	conn net.Conn
	up   *upstream
	lim  limitReader
	br   *bufio.Reader
	bw   *bufio.Writer
	// idleSince is when it went back to the pool.
	idleSince time.Time
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func newH1Conn(conn net.Conn, up *upstream) *h1Conn {
	pc := &h1Conn{conn: conn, up: up}
	pc.lim.r = conn
	pc.br = readerPool.Get().(*bufio.Reader)
	pc.br.Reset(&pc.lim)
	pc.bw = writerPool.Get().(*bufio.Writer)
	pc.bw.Reset(conn)
	return pc
}

// close closes the connection and returns its buffers to their pools.
// Only the connection's single user may call it (nothing may be reading).
func (pc *h1Conn) close() {
	_ = pc.conn.Close()
	if pc.br != nil {
		pc.br.Reset(nil)
		readerPool.Put(pc.br)
		pc.bw.Reset(nil)
		writerPool.Put(pc.bw)
		pc.br, pc.bw = nil, nil
	}
}

// roundTrip writes req and reads the response header. The response body
// puts the connection back in the pool when read to the end, or closes it.
func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// A client that goes away (or a router shutting down) cancels ctx:
	// unblock whatever read or write is in progress.
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	pc.lim.n = maxResponseHeaderBytes
	var resp *http.Response
	for informational := 0; ; informational++ {
		if informational > max1xxResponses {
			return fail(fmt.Errorf("more than %d informational (1xx) responses", max1xxResponses))
		}
		var err error
		if resp, err = http.ReadResponse(pc.br, req); err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				err = fmt.Errorf("response header larger than %d bytes", maxResponseHeaderBytes)
			}
			return fail(err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("instance switched protocols on a request that did not ask to"))
		}
		if resp.StatusCode >= 200 {
			break
		}
		// 1xx (103 Early Hints): the proxy forwards them through its
		// trace hook, as with http.Transport.
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	pc.lim.n = math.MaxInt64
	b := &h1Body{pc: pc, body: resp.Body, stop: stop, reuse: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.eof = true
		b.release(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// h1Body is a response body; the connection is reused when the body was
// read to its end, and closed otherwise.
type h1Body struct {
	pc    *h1Conn
	body  io.ReadCloser
	stop  func() bool
	reuse bool
	eof   bool
	done  atomic.Bool
}

// Read reads the body; at its end the connection is released.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.eof {
			return 0, io.EOF
		}
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true // only the reader touches eof
		b.release(true)
	}
	return n, err
}

// Close releases the connection: back to the pool after a complete
// body, closed otherwise. It may be called while a Read is blocked (to
// abort it).
func (b *h1Body) Close() error {
	b.release(false)
	return nil
}

// release pools or closes the connection, once. atEOF says the caller is
// the body's reader and has seen its end. Otherwise (Close before the
// end) a Read may still be using the connection's buffer, so the
// connection is closed without recycling it.
func (b *h1Body) release(atEOF bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	// stop is false when ctx was cancelled: the deadline is poisoned.
	live := b.stop()
	switch {
	case !atEOF:
		_ = b.pc.conn.Close()
	case live && b.reuse:
		b.pc.up.putIdle(b.pc, time.Now())
	default:
		b.pc.close()
	}
}

// errHeaderTooLarge is limitReader's error once its budget is spent.
var errHeaderTooLarge = errors.New("router: response header too large")

// limitReader reads from r while n bytes are left.
type limitReader struct {
	r io.Reader
	n int64
}

// Read implements io.Reader.
func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// takeIdle pops the most recently used idle connection, closing the ones
// idle for longer than idleConnTimeout; nil when there is none.
func (u *upstream) takeIdle(now time.Time) *h1Conn {
	u.idleMu.Lock()
	var pc *h1Conn
	for n := len(u.idle); n > 0 && pc == nil; n = len(u.idle) {
		pc = u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		if now.Sub(pc.idleSince) > idleConnTimeout {
			defer pc.close()
			pc = nil
		}
	}
	u.idleMu.Unlock()
	return pc
}

// putIdle keeps pc for reuse, or closes it when the pool is full or the
// upstream left the table.
func (u *upstream) putIdle(pc *h1Conn, now time.Time) {
	u.idleMu.Lock()
	if u.gone || len(u.idle) >= maxIdlePerUpstream {
		u.idleMu.Unlock()
		pc.close()
		return
	}
	pc.idleSince = now
	u.idle = append(u.idle, pc)
	u.idleMu.Unlock()
}

// closeIdle closes the idle connections unused since before; with gone,
// all of them, and none will be kept from now on.
func (u *upstream) closeIdle(before time.Time, gone bool) {
	u.idleMu.Lock()
	u.gone = u.gone || gone
	keep := u.idle[:0]
	var drop []*h1Conn
	for _, pc := range u.idle {
		if gone || pc.idleSince.Before(before) {
			drop = append(drop, pc)
		} else {
			keep = append(keep, pc)
		}
	}
	clear(u.idle[len(keep):])
	u.idle = keep
	u.idleMu.Unlock()
	for _, pc := range drop {
		pc.close()
	}
}
