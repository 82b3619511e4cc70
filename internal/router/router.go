// Package router is berth's edge proxy. It builds a route table from a
// Source (the store, in `berth up`), rebuilds it on every relevant change,
// and proxies HTTP/1.1, HTTP/2 (TLS, and h2c), WebSocket and TCP traffic to
// the ready instances of each route, picking the revision with the traffic
// engine (package traffic) and the instance by round-robin or least
// connections. See docs/router.md.
//
// Threading: the table is immutable and swapped atomically; requests read
// whichever table is current when they start. Balancer state (round-robin
// counters, active requests per upstream) is shared; a pick takes a read
// lock and atomics. Each upstream's idle connections (upstream.go) are
// under a mutex of their own, held only to push or pop one.
package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/router/traffic"
)

// Defaults for Options fields left zero.
const (
	DefaultDialTimeout = 2 * time.Second
	DefaultMaxRetries  = 2
)

// Options configure a Router.
type Options struct {
	// Source is where routes, instances, nodes and certificates come from
	// (required); use NewStoreSource in-process.
	Source Source
	// Listen is the plain HTTP address (HTTP/1.1 and h2c); "" disables it.
	Listen string
	// TLSListen is the HTTPS address (HTTP/1.1 and HTTP/2, certificates
	// chosen by SNI from the stored ones); "" disables it.
	TLSListen string
	// MetricsListen serves Prometheus metrics at /metrics; "" disables it.
	MetricsListen string
	// TCPHost is the host tcp routes' ListenPorts bind on ("" = every
	// interface).
	TCPHost string
	// HTTPSPort is the port HTTP→HTTPS redirects point to; 0 means the
	// TLSListen port (443 is left out of the URL).
	HTTPSPort int
	// AccessLog gets one line per request or tcp connection; nil: none.
	AccessLog io.Writer
	// Log is for the router's own messages.
	Log *slog.Logger
	// Rand draws traffic weights; nil means math/rand/v2. It is called
	// under a mutex, so it need not be safe for concurrent use.
	Rand traffic.Rand
	// DialTimeout bounds connecting to an instance (default 2s).
	DialTimeout time.Duration
	// MaxRetries is how many other instances an idempotent request
	// without a body is retried on after a connect failure (default 2).
	MaxRetries int
}

// Router is the edge proxy. Create it with New and serve with Run.
type Router struct {
	o       Options
	log     *slog.Logger
	table   atomic.Pointer[table.Table]
	certs   atomic.Pointer[certIndex]
	bal     *balancer
	metrics *metrics
	proxy   http.Handler
	// upstreamTransport carries what the lean client does not (request
	// bodies, WebSocket).
	upstreamTransport *http.Transport
	randMu            sync.Mutex
	access            *accessLog

	httpLn, tlsLn, metricsLn net.Listener
	tcp                      *tcpListeners
	ready                    chan struct{}
}

// New checks the options and opens the listeners, so address errors show
// up here and Addrs is known before Run.
func New(o Options) (*Router, error) {
	if o.Source == nil {
		return nil, errors.New("router: Options.Source is required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Rand == nil {
		o.Rand = globalRand{}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	} else if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	}
	r := &Router{o: o, log: o.Log, bal: newBalancer(), metrics: newMetrics(), access: newAccessLog(o.AccessLog),
		ready: make(chan struct{})}
	r.metrics.reg.MustRegister(newUpstreamActive(r.bal))
	r.table.Store(&table.Table{TCP: map[int]*table.Route{}})
	r.certs.Store(&certIndex{})
	r.proxy = r.newReverseProxy()
	r.tcp = newTCPListeners(r)
	var err error
	listen := func(what, addr string) net.Listener {
		if addr == "" || err != nil {
			return nil
		}
		ln, lerr := net.Listen("tcp", addr)
		if lerr != nil {
			err = fmt.Errorf("router: %s listener on %s: %w", what, addr, lerr)
		}
		return ln
	}
	r.httpLn = listen("http", o.Listen)
	r.tlsLn = listen("https", o.TLSListen)
	r.metricsLn = listen("metrics", o.MetricsListen)
	if err != nil {
		r.closeListeners()
		return nil, err
	}
	if r.o.HTTPSPort == 0 && r.tlsLn != nil {
		r.o.HTTPSPort = r.tlsLn.Addr().(*net.TCPAddr).Port
	}
	return r, nil
}

// Addrs are the addresses the router listens on ("" when disabled).
type Addrs struct {
	HTTP, HTTPS, Metrics string
}

// Addrs returns the bound addresses (useful with port 0).
func (r *Router) Addrs() Addrs {
	var a Addrs
	if r.httpLn != nil {
		a.HTTP = r.httpLn.Addr().String()
	}
	if r.tlsLn != nil {
		a.HTTPS = r.tlsLn.Addr().String()
	}
	if r.metricsLn != nil {
		a.Metrics = r.metricsLn.Addr().String()
	}
	return a
}

// Table returns the current route table.
func (r *Router) Table() *table.Table { return r.table.Load() }

// Ready is closed once the first table from the Source is in place.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Run follows the Source and serves until ctx ends, then shuts the
// listeners down (waiting up to 5s for requests in flight).
func (r *Router) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snaps, err := r.o.Source.Snapshots(ctx)
	if err != nil {
		r.closeListeners()
		return fmt.Errorf("router: read routes: %w", err)
	}
	var servers []*http.Server
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(srv *http.Server, ln net.Listener, tlsOn bool) {
		servers = append(servers, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if tlsOn {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if r.httpLn != nil {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		serve(r.httpServer("http", p), r.httpLn, false)
	}
	if r.tlsLn != nil {
		srv := r.httpServer("https", nil)
		srv.TLSConfig = &tls.Config{GetCertificate: r.getCertificate, MinVersion: tls.VersionTLS12}
		serve(srv, r.tlsLn, true)
	}
	if r.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", r.metrics.handler())
		serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, r.metricsLn, false)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.closeIdleEvery(ctx, idleConnTimeout/3)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		first := true
		for s := range snaps {
			r.install(table.Build(s))
			if first {
				close(r.ready)
				first = false
			}
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	r.tcp.closeAll()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	wg.Wait()
	r.tcp.wait()
	r.bal.closeIdle(time.Time{}, true)
	r.upstreamTransport.CloseIdleConnections()
	return err
}

// closeIdleEvery closes upstream connections idle for idleConnTimeout,
// every period until ctx ends.
func (r *Router) closeIdleEvery(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.bal.closeIdle(now.Add(-idleConnTimeout), false)
		}
	}
}

// install swaps in a new table and reconciles what depends on it.
func (r *Router) install(t *table.Table) {
	old := r.table.Swap(t)
	r.certs.Store(buildCertIndex(t, r.certs.Load(), r.log))
	r.bal.prune(t)
	r.tcp.reconcile(t)
	r.metrics.tableInstalled(t)
	if old == nil || !equalStrings(old.Problems, t.Problems) {
		for _, p := range t.Problems {
			r.log.Warn("router: " + p)
		}
	}
	r.log.Debug("router: table installed", "rev", t.Rev, "routes", len(t.Routes))
}

func (r *Router) httpServer(listener string, p *http.Protocols) *http.Server {
	return &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         p,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		ConnState:         r.metrics.connState(listener),
	}
}

func (r *Router) closeListeners() {
	for _, ln := range []net.Listener{r.httpLn, r.tlsLn, r.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// intN draws from the configured random source under a mutex.
func (r *Router) intN(n int) int {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.o.Rand.IntN(n)
}

// lockedRand adapts Router.intN to traffic.Rand.
type lockedRand struct{ r *Router }

// IntN implements traffic.Rand.
func (l lockedRand) IntN(n int) int { return l.r.intN(n) }

// globalRand is math/rand/v2's concurrency-safe global source.
type globalRand struct{}

// IntN implements traffic.Rand.
func (globalRand) IntN(n int) int { return rand.IntN(n) }

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func portString(p int) string { return strconv.Itoa(p) }
