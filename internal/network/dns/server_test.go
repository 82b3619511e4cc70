package dns

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// fixture is a DNS server over a bbolt store in a temp dir, with a fake
// upstream on loopback.
type fixture struct {
	t   *testing.T
	st  store.Store
	srv *Server
	ctx context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := bolttest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	up := fakeUpstream(t)
	srv, err := New(Options{Source: NewStoreSource(st, nil), Listen: []string{"127.0.0.1:0"}, Upstreams: []string{up}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("server got no zone")
	}
	return &fixture{t: t, st: st, srv: srv, ctx: ctx}
}

// fakeUpstream answers every A question with 192.0.2.99, over UDP and
// TCP on one loopback port.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	sk, err := bind("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
			A: netip.MustParseAddr("192.0.2.99").AsSlice()}}
		_ = w.WriteMsg(m)
	})
	for _, s := range []*mdns.Server{{PacketConn: sk.pc, Handler: h}, {Listener: sk.ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	t.Cleanup(func() { sk.pc.Close(); sk.ln.Close() })
	return sk.pc.LocalAddr().String()
}

func (f *fixture) put(key string, v any) {
	f.t.Helper()
	b, err := json.Marshal(v)
	if err == nil {
		_, err = f.st.Txn(f.ctx, store.Txn{Ops: []store.Op{store.Put(key, b)}})
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) putApp(a model.App) { f.put(model.AppKey(a.Namespace, a.Name), a) }

func (f *fixture) putInst(in model.Instance) { f.put(in.Key(), in) }

func (f *fixture) query(net, name string, qtype uint16) *mdns.Msg {
	f.t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: net, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, f.srv.Addrs()[0])
	if err != nil {
		f.t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

// answers renders a reply as "RCODE: rr rr ..." with each rr's data, sorted.
func answers(r *mdns.Msg) string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.AAAA:
			out = append(out, v.AAAA.String())
		case *mdns.SRV:
			out = append(out, fmt.Sprintf("%s:%d", v.Target, v.Port))
		}
	}
	sort.Strings(out)
	return mdns.RcodeToString[r.Rcode] + ": " + strings.Join(out, " ")
}

// eventually queries until the answer is want; answers follow the store
// within a moment, the deadline only stops a hung test.
func (f *fixture) eventually(name string, qtype uint16, want string) {
	f.t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = answers(f.query("udp", name, qtype)); got == want {
			return
		}
	}
	f.t.Fatalf("%s %s = %q, want %q", name, mdns.TypeToString[qtype], got, want)
}

func TestServerFollowsInstances(t *testing.T) {
	f := newFixture(t)
	f.eventually("web.default.berth.", mdns.TypeA, "NXDOMAIN: ")
	f.putApp(app("default", "web", true, httpPort))
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: ")

	// Starting, then running but not yet healthy: not served.
	web1 := inst("default", "web", "web-1", model.StateStarting, "", "")
	f.putInst(web1)
	web1.Status.State, web1.Status.Health, web1.Status.IP = model.StateRunning, model.HealthUnknown, netip.MustParseAddr("10.77.0.2")
	f.putInst(web1)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: ")
	web1.Status.Health = model.HealthHealthy
	f.putInst(web1)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: 10.77.0.2")

	web2 := inst("default", "web", "web-2", model.StateRunning, model.HealthHealthy, "10.77.0.3")
	f.putInst(web2)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: 10.77.0.2 10.77.0.3")
	f.eventually("_http._tcp.web.default.berth.", mdns.TypeSRV, "NOERROR: web-1.web.default.berth.:8080 web-2.web.default.berth.:8080")
	if r := f.query("tcp", "_http._tcp.web.default.berth.", mdns.TypeSRV); len(r.Extra) != 2 || !r.Authoritative {
		t.Errorf("SRV over TCP: extra %v authoritative %v, want the targets' addresses", r.Extra, r.Authoritative)
	}
	f.eventually("web-2.web.default.berth.", mdns.TypeA, "NOERROR: 10.77.0.3")

	// Unhealthy, stopping, deleted: gone from the answers.
	web1.Status.Health = model.HealthUnhealthy
	f.putInst(web1)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: 10.77.0.3")
	web2.Desired = model.DesiredStop
	f.putInst(web2)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: ")
	f.eventually("web-2.web.default.berth.", mdns.TypeA, "NXDOMAIN: ")
	web1.Status.Health = model.HealthHealthy
	f.putInst(web1)
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: 10.77.0.2")
	if _, err := f.st.Txn(f.ctx, store.Txn{Ops: []store.Op{store.Delete(web1.Key()), store.Delete(web2.Key())}}); err != nil {
		t.Fatal(err)
	}
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: ")

	// An IPv6 address is an AAAA record.
	web3 := inst("default", "web", "web-3", model.StateRunning, model.HealthHealthy, "fd00:77::3")
	f.putInst(web3)
	f.eventually("web.default.berth.", mdns.TypeAAAA, "NOERROR: fd00:77::3")
	f.eventually("web.default.berth.", mdns.TypeA, "NOERROR: ")

	// The app removed: NXDOMAIN again.
	if _, err := f.st.Txn(f.ctx, store.Txn{Ops: []store.Op{store.Delete(model.AppKey("default", "web"))}}); err != nil {
		t.Fatal(err)
	}
	f.eventually("web.default.berth.", mdns.TypeAAAA, "NXDOMAIN: ")
}

func TestServerForwardsOtherNames(t *testing.T) {
	f := newFixture(t)
	for _, net := range []string{"udp", "tcp"} {
		r := f.query(net, "example.test.", mdns.TypeA)
		if got := answers(r); got != "NOERROR: 192.0.2.99" || r.Authoritative {
			t.Errorf("%s: forwarded answer %q (authoritative %v), want the upstream's 192.0.2.99", net, got, r.Authoritative)
		}
	}
}

func TestServerWithoutUpstreamFails(t *testing.T) {
	st := bolttest.Open(t)
	srv, err := New(Options{Source: NewStoreSource(st, nil), Listen: []string{"127.0.0.1:0"}, Upstreams: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	m := new(mdns.Msg)
	m.SetQuestion("example.test.", mdns.TypeA)
	r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(m, srv.Addrs()[0])
	if err != nil || r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no upstream: %v %v, want SERVFAIL", r, err)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	body := "nameserver 192.0.2.1\nnameserver 127.0.0.1\nnameserver fd00::1\nsearch example.test\n"
	if err := writeFile(p, body); err != nil {
		t.Fatal(err)
	}
	got := upstreamsFrom(p, []string{"127.0.0.1:53"}, slog.Default())
	if strings.Join(got, ",") != "192.0.2.1:53,[fd00::1]:53" {
		t.Errorf("upstreams %v, want 192.0.2.1:53 and [fd00::1]:53 (our own address left out)", got)
	}
}

func TestBindAddressNotYetOnAnInterface(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1: on no interface of this host.
	sk, err := bind("192.0.2.53:0")
	if err != nil {
		t.Fatalf("bind a not-yet-existing address: %v (IP_FREEBIND)", err)
	}
	sk.pc.Close()
	sk.ln.Close()
}

func writeFile(p, body string) error { return os.WriteFile(p, []byte(body), 0o644) }
