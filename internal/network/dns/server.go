// Package dns is berth's DNS server, one per node: it answers
// "<app>.<namespace>.berth." with the addresses of the app's ready
// instances (the router's readiness rule), "<instance>.<app>.<namespace>.berth."
// with one instance's, "_<port>._<proto>.<app>.<namespace>.berth." with
// SRV records, NXDOMAIN for names of unknown apps, and forwards every
// other name to the upstream resolvers (the host's, from resolv.conf).
// Its data comes from a Source (a store watch); answers follow instances
// within a moment of the store changing. See docs/dns.md.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// Options configure a Server.
type Options struct {
	// Source supplies the zone's data (required).
	Source Source
	// Listen are the addresses to serve on, UDP and TCP ("10.89.0.1:53",
	// "127.0.0.1:5353"). An address need not exist yet (the node bridge
	// gets its address with the first workload): sockets are bound with
	// IP_FREEBIND. Port 0 picks a free port (the same for UDP and TCP).
	Listen []string
	// Optional are more listen addresses that are skipped, with a
	// warning, when they cannot be bound (another server holds the port);
	// Addrs says which were.
	Optional []string
	// Upstreams are the resolvers other names are forwarded to
	// ("host:port"); nil means the name servers of ResolvConf.
	Upstreams []string
	// ResolvConf is read for upstreams when Upstreams is nil (default
	// /etc/resolv.conf).
	ResolvConf string
	// TTL of berth's records (default DefaultTTL).
	TTL time.Duration
	// ForwardTimeout bounds one forwarded query per upstream (default 2s).
	ForwardTimeout time.Duration
	Log            *slog.Logger
}

// Server is a node's DNS server. New binds its sockets; Run serves.
type Server struct {
	o     Options
	zone  atomic.Pointer[Zone]
	socks []socket
	// ready is closed once the first zone is in.
	ready     chan struct{}
	readyOnce sync.Once
}

// socket is one listen address's UDP and TCP sockets.
type socket struct {
	pc net.PacketConn
	ln net.Listener
}

// New checks o and binds every listen address.
func New(o Options) (*Server, error) {
	if o.Source == nil {
		return nil, errors.New("dns: Options.Source is required")
	}
	if len(o.Listen)+len(o.Optional) == 0 {
		return nil, errors.New("dns: no listen address")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = 2 * time.Second
	}
	s := &Server{o: o, ready: make(chan struct{})}
	for _, addr := range o.Listen {
		sock, err := bind(addr)
		if err != nil {
			s.close()
			return nil, err
		}
		s.socks = append(s.socks, sock)
	}
	for _, addr := range o.Optional {
		sock, err := bind(addr)
		if err != nil {
			o.Log.Warn("dns: not serving on an optional address", "addr", addr, "err", err)
			continue
		}
		s.socks = append(s.socks, sock)
	}
	if len(s.socks) == 0 {
		return nil, errors.New("dns: could not bind any listen address")
	}
	if o.Upstreams == nil {
		s.o.Upstreams = upstreamsFrom(o.ResolvConf, s.Addrs(), o.Log)
	}
	return s, nil
}

// Addrs are the bound UDP (and TCP) addresses: Listen's, then those of
// Optional that could be bound.
func (s *Server) Addrs() []string {
	out := make([]string, len(s.socks))
	for i, sk := range s.socks {
		out[i] = sk.pc.LocalAddr().String()
	}
	return out
}

// Upstreams are the resolvers other names are forwarded to.
func (s *Server) Upstreams() []string { return append([]string(nil), s.o.Upstreams...) }

// Zone is the zone currently served; nil before the first snapshot.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// Ready is closed once the server has its first zone.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx ends, then closes the sockets. It follows the
// source, swapping in a new zone on every snapshot.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	snaps, err := s.o.Source.Snapshots(ctx)
	if err != nil {
		return fmt.Errorf("dns: read the store: %w", err)
	}
	var wg sync.WaitGroup
	var servers []*mdns.Server
	for _, sk := range s.socks {
		for _, srv := range []*mdns.Server{{PacketConn: sk.pc, Handler: s}, {Listener: sk.ln, Handler: s}} {
			servers = append(servers, srv)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
					s.o.Log.Warn("dns: server stopped", "addr", sk.pc.LocalAddr(), "err", err)
				}
			}()
		}
	}
	for snap := range snaps {
		s.zone.Store(Build(snap, s.o.TTL))
		s.readyOnce.Do(func() { close(s.ready) })
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	// A server that had not started yet when Shutdown came (a quick
	// cancel) starts on closed sockets and returns at once.
	s.close()
	wg.Wait()
	return nil
}

// Close releases the sockets of a server that will not Run (Run closes
// them itself when it returns).
func (s *Server) Close() { s.close() }

func (s *Server) close() {
	for _, sk := range s.socks {
		_ = sk.pc.Close()
		_ = sk.ln.Close()
	}
}

// ServeDNS implements mdns.Handler: berth's names from the zone, others
// forwarded.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	if len(r.Question) != 1 || r.Opcode != mdns.OpcodeQuery {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	if !InZone(q.Name) {
		s.forward(w, r)
		return
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	z := s.zone.Load()
	if z == nil {
		m.Rcode = mdns.RcodeServerFailure // not loaded yet: the client retries
	} else {
		a := z.Lookup(q.Name, q.Qtype)
		m.Rcode, m.Answer, m.Ns, m.Extra = a.Rcode, a.Answer, a.Ns, a.Extra
	}
	size := mdns.MinMsgSize
	if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
		size = mdns.MaxMsgSize
	} else if opt := r.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		m.SetEdns0(uint16(size), false)
	}
	m.Truncate(size)
	_ = w.WriteMsg(m)
}

// forward asks each upstream in turn, over the protocol the query came
// in on, and relays the first answer; SERVFAIL when none answers.
func (s *Server) forward(w mdns.ResponseWriter, r *mdns.Msg) {
	proto := "udp"
	if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
		proto = "tcp"
	}
	c := &mdns.Client{Net: proto, Timeout: s.o.ForwardTimeout}
	for _, up := range s.o.Upstreams {
		resp, _, err := c.Exchange(r, up)
		if err != nil {
			s.o.Log.Debug("dns: upstream did not answer", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		resp.Id = r.Id
		_ = w.WriteMsg(resp)
		return
	}
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}

// upstreamsFrom reads the name servers of a resolv.conf, leaving out our
// own addresses (a loop).
func upstreamsFrom(path string, own []string, log *slog.Logger) []string {
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		log.Warn("dns: no upstream resolvers; names outside berth will fail", "resolvConf", path, "err", err)
		return []string{}
	}
	skip := map[string]bool{}
	for _, a := range own {
		skip[a] = true
	}
	out := []string{}
	for _, srv := range cc.Servers {
		a := net.JoinHostPort(srv, cc.Port)
		if !skip[a] {
			out = append(out, a)
		}
	}
	return out
}

// bind opens UDP and TCP sockets on addr with IP_FREEBIND, so an address
// not (yet) on any interface can be bound. Port 0 is resolved once, on
// UDP, and reused for TCP.
func bind(addr string) (socket, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return socket{}, fmt.Errorf("dns: listen address %q: %w", addr, err)
	}
	lc := net.ListenConfig{Control: freebind}
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return socket{}, fmt.Errorf("dns: listen on %s/udp: %w", addr, err)
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return socket{pc: pc, ln: ln}, nil
		}
		pc.Close()
		if port != "0" || attempt >= 10 {
			return socket{}, fmt.Errorf("dns: listen on %s/tcp: %w", net.JoinHostPort(host, p), err)
		}
	}
}

// freebind sets IP_FREEBIND (and IPV6_FREEBIND) on a socket.
func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		switch network {
		case "udp6", "tcp6":
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, ipv6FreeBind, 1)
		default:
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// ipv6FreeBind is Linux's IPV6_FREEBIND (not in package syscall).
const ipv6FreeBind = 78
