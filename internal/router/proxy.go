package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/router/traffic"
)

// attempt is one proxied request's routing state, shared between
// ServeHTTP, the transport (which picks and retries) and the error handler.
type attempt struct {
	route    *table.Route
	cands    []table.Backend
	upstream string // last upstream tried
	tried    []string
	kind     string // error kind for metrics, "" on success
	upgraded bool   // the upstream switched protocols (WebSocket)
}

type attemptKey struct{}

// ServeHTTP routes one request: 404 for an unknown host, a redirect when
// the route wants HTTPS, 502 when no instance is ready, else the proxy.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	host := canonicalHost(req.Host)
	t := r.table.Load()
	route := t.Match(host, req.URL.Path)
	a := &attempt{route: route}
	defer func() { r.finish(req, rec, a, start) }()
	switch {
	case route == nil && t.HasHost(host):
		plainError(rec, http.StatusNotFound, fmt.Sprintf("berth router: no route for path %q on host %q\n", req.URL.Path, host))
		return
	case route == nil:
		plainError(rec, http.StatusNotFound, fmt.Sprintf("berth router: no app is routed for host %q\n", host))
		return
	case req.TLS == nil && route.Spec.TLS != nil && route.Spec.TLS.Redirect:
		rec.Header().Set("Location", r.httpsURL(host, req))
		rec.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	d := traffic.Pick(requestInfo(req), &route.Policy, route.Ready, lockedRand{r})
	a.cands = route.Candidates(d.Revision)
	if len(a.cands) == 0 {
		a.kind = "no_backend"
		plainError(rec, http.StatusBadGateway, fmt.Sprintf("berth router: no ready instance of app %s/%s for %s%s (port %q); check 'berth ps %s -n %s'\n",
			route.Namespace, route.App, host, route.Path(), route.Spec.Port, route.App, route.Namespace))
		return
	}
	r.proxy.ServeHTTP(rec, req.WithContext(context.WithValue(req.Context(), attemptKey{}, a)))
}

func (r *Router) finish(req *http.Request, rec *recorder, a *attempt, start time.Time) {
	dur := time.Since(start)
	if a.upgraded {
		rec.status = http.StatusSwitchingProtocols // the proxy wrote it on the hijacked conn
	}
	routeID := "none"
	if a.route != nil {
		routeID = a.route.ID
	}
	r.metrics.request(routeID, a.upstream, rec.status, dur, a.kind)
	if r.access != nil { // RequestURI and canonicalHost allocate; skip them when not logging
		r.access.line(start, req.RemoteAddr, canonicalHost(req.Host), req.Method, req.URL.RequestURI(), rec.status, a.upstream, routeID, dur)
	}
}

func (r *Router) httpsURL(host string, req *http.Request) string {
	u := url.URL{Scheme: "https", Host: host, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if r.o.HTTPSPort != 0 && r.o.HTTPSPort != 443 {
		u.Host = net.JoinHostPort(host, portString(r.o.HTTPSPort))
	}
	return u.String()
}

// newReverseProxy builds the proxy; the upstream is chosen in the
// transport so connect failures can be retried on another instance.
func (r *Router) newReverseProxy() http.Handler {
	dialer := &net.Dialer{Timeout: r.o.DialTimeout, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   maxIdlePerUpstream,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: 0, // long polls and streams are fine
		ExpectContinueTimeout: time.Second,
		// Pass Accept-Encoding through as the client sent it (like the
		// lean client) instead of asking for gzip and decompressing.
		DisableCompression: true,
	}
	r.upstreamTransport = base
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: "upstream.invalid"})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     &retryTransport{r: r, lean: newH1Client(r.o.DialTimeout), base: base},
		BufferPool:    copyBuffers{},
		FlushInterval: 0, // SSE and bodies of unknown length are flushed as written
		ErrorHandler:  r.proxyError,
		ErrorLog:      nil,
	}
}

// copyBuffers lends the proxy its 32 KiB response copy buffers; without
// a pool it allocates one per request (most of the bytes a request
// allocates).
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Get implements httputil.BufferPool.
func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

// Put implements httputil.BufferPool.
func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		b = b[:cap(b)]
		copyBufferPool.Put(&b)
	}
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if errors.Is(err, context.Canceled) || req.Context().Err() != nil {
		a.kind = "client_gone"
		w.WriteHeader(499) // nginx's "client closed request"; nobody reads it
		return
	}
	var de *dialError
	if errors.As(err, &de) {
		a.kind = "connect"
	} else if a.kind == "" {
		a.kind = "upstream"
	}
	r.log.Debug("router: upstream failed", "route", a.route.ID, "upstream", a.upstream, "err", err)
	plainError(w, http.StatusBadGateway, fmt.Sprintf("berth router: instance %s of app %s/%s failed: %v\n",
		a.upstream, a.route.Namespace, a.route.App, err))
}

// dialError marks a failure to connect: nothing reached the instance, so
// the request can go to another one.
type dialError struct{ err error }

// Error is the dial error's message.
func (e *dialError) Error() string { return e.err.Error() }

// Unwrap returns the dial error.
func (e *dialError) Unwrap() error { return e.err }

// retryTransport picks the upstream for each try and sends replayable
// requests through the lean client, the others through base.
type retryTransport struct {
	r    *Router
	lean *h1Client
	base *http.Transport
}

// RoundTrip implements http.RoundTripper.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a := req.Context().Value(attemptKey{}).(*attempt)
	retryable := idempotent(req.Method) && (req.Body == nil || req.Body == http.NoBody)
	for {
		be, up, ok := t.r.bal.pick(a.route, a.cands, a.tried)
		if !ok {
			return nil, &dialError{fmt.Errorf("no instance reachable (tried %s)", strings.Join(a.tried, ", "))}
		}
		a.upstream = be.Addr
		a.tried = append(a.tried, be.Addr)
		out := *req
		u := *req.URL
		u.Host = be.Addr
		out.URL = &u
		up.active.Add(1)
		var resp *http.Response
		var err error
		if leanEligible(&out) {
			resp, err = t.lean.roundTrip(up, &out)
		} else {
			resp, err = t.base.RoundTrip(&out)
		}
		if err == nil {
			a.upgraded = resp.StatusCode == http.StatusSwitchingProtocols
			resp.Body = trackBody(resp.Body, func() { up.active.Add(-1) })
			return resp, nil
		}
		up.active.Add(-1)
		var de *dialError
		if !errors.As(err, &de) || !retryable || len(a.tried) > t.r.o.MaxRetries || req.Context().Err() != nil {
			return nil, err
		}
		t.r.metrics.upstreamError(a.route.ID, be.Addr, "connect")
		t.r.log.Debug("router: connect failed; retrying on another instance", "route", a.route.ID, "upstream", be.Addr, "err", err)
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// trackBody calls done once when the body is closed; it keeps the body's
// io.Writer (a 101 Switching Protocols body is read-write).
func trackBody(b io.ReadCloser, done func()) io.ReadCloser {
	tb := &trackedBody{ReadCloser: b, done: done}
	if rwc, ok := b.(io.ReadWriteCloser); ok {
		return &trackedRWC{trackedBody: tb, w: rwc}
	}
	return tb
}

type trackedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

// Close closes the body and reports the request done once.
func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

type trackedRWC struct {
	*trackedBody
	w io.Writer
}

// Write writes to the upgraded connection.
func (b *trackedRWC) Write(p []byte) (int, error) { return b.w.Write(p) }

// recorder remembers the status for logs and metrics; Unwrap lets the
// proxy hijack (WebSocket) and flush through it.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// WriteHeader records the final status code.
func (w *recorder) WriteHeader(code int) {
	if !w.wrote && code >= 200 || code == http.StatusSwitchingProtocols {
		w.status = code
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write marks the response started.
func (w *recorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func plainError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// canonicalHost lowercases host and drops the port and a trailing dot.
func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func requestInfo(req *http.Request) traffic.RequestInfo {
	ri := traffic.RequestInfo{Header: req.Header}
	if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
		ri.Source = ap.Addr()
	}
	return ri
}
