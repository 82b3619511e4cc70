package router

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/router/traffic"
)

// tcpListeners owns one listener per tcp route's ListenPort, opened and
// closed as routes come and go.
type tcpListeners struct {
	r      *Router
	mu     sync.Mutex
	lns    map[int]net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newTCPListeners(r *Router) *tcpListeners {
	return &tcpListeners{r: r, lns: map[int]net.Listener{}, conns: map[net.Conn]struct{}{}}
}

// reconcile opens listeners for new tcp routes and closes those of routes
// that are gone; connections already proxied keep going.
func (l *tcpListeners) reconcile(t *table.Table) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	for port, ln := range l.lns {
		if t.TCP[port] == nil {
			_ = ln.Close()
			delete(l.lns, port)
		}
	}
	for port, route := range t.TCP {
		if l.lns[port] != nil {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(l.r.o.TCPHost, portString(port)))
		if err != nil {
			l.r.log.Warn("router: cannot listen for tcp route", "route", route.ID, "port", port, "err", err)
			continue
		}
		l.lns[port] = ln
		l.wg.Add(1)
		go l.serve(port, ln)
	}
}

func (l *tcpListeners) serve(port int, ln net.Listener) {
	defer l.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.r.proxyTCP(port, c)
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

// closeAll closes every listener and proxied connection.
func (l *tcpListeners) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for port, ln := range l.lns {
		_ = ln.Close()
		delete(l.lns, port)
	}
	for c := range l.conns {
		_ = c.Close()
	}
}

func (l *tcpListeners) wait() { l.wg.Wait() }

// proxyTCP connects a client to an instance of the route on port,
// trying other instances when one refuses, and copies both ways.
func (r *Router) proxyTCP(port int, client net.Conn) {
	start := time.Now()
	defer client.Close()
	route := r.table.Load().TCP[port]
	if route == nil {
		return
	}
	ri := traffic.RequestInfo{}
	if ap, err := netip.ParseAddrPort(client.RemoteAddr().String()); err == nil {
		ri.Source = ap.Addr()
	}
	d := traffic.Pick(ri, &route.Policy, route.Ready, lockedRand{r})
	cands := route.Candidates(d.Revision)
	var tried []string
	var up *upstream
	var backend net.Conn
	for backend == nil {
		be, u, ok := r.bal.pick(route, cands, tried)
		if !ok {
			r.metrics.request(route.ID, "", 502, time.Since(start), "no_backend")
			r.access.tcpLine(start, client.RemoteAddr().String(), port, "no instance reachable", "", route.ID, 0, 0, time.Since(start))
			return
		}
		tried = append(tried, be.Addr)
		c, err := net.DialTimeout("tcp", be.Addr, r.o.DialTimeout)
		if err != nil {
			r.metrics.upstreamError(route.ID, be.Addr, "connect")
			continue
		}
		backend, up = c, u
	}
	up.active.Add(1)
	defer up.active.Add(-1)
	defer backend.Close()
	var in, out int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(backend, client)
		closeWrite(backend)
	}()
	out, _ = io.Copy(client, backend)
	closeWrite(client)
	wg.Wait()
	r.metrics.request(route.ID, up.addr, 200, time.Since(start), "")
	r.access.tcpLine(start, client.RemoteAddr().String(), port, "closed", up.addr, route.ID, in, out, time.Since(start))
}

// closeWrite half-closes c when it can, so the other side sees EOF.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
