package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/store/bolt"
)

// TestStartDNSAddressTaken: when the node network gateway's port 53 is
// held by someone else, berth runs without node DNS (workloads keep the
// host's resolvers) unless --dns-listen asked for an address; then the
// extra address is served and the gateway is not given to workloads.
func TestStartDNSAddressTaken(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// 192.0.2.0/24 (TEST-NET-1) is on no interface: bound with IP_FREEBIND.
	native := NativeOptions{Subnet: netip.MustParsePrefix("192.0.2.0/24")}
	holder, err := dns.New(dns.Options{Source: dns.NewStoreSource(st, log), Listen: []string{"192.0.2.1:53"}, Upstreams: []string{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = holder.Run(ctx) }()
	defer func() { cancel(); <-done }()

	d, err := startDNS(st, DNSOptions{NoDocker: true}, native, log)
	if err != nil || d != nil {
		t.Fatalf("gateway taken, no --dns-listen: %v %v, want no node DNS and no error", d, err)
	}
	d, err = startDNS(st, DNSOptions{NoDocker: true, Listen: []string{"127.0.0.1:0"}}, native, log)
	if err != nil || d == nil {
		t.Fatalf("gateway taken, with --dns-listen: %v %v", d, err)
	}
	defer d.srv.Run(canceled())
	if d.native.IsValid() || len(d.srv.Addrs()) != 1 {
		t.Errorf("native %v addrs %v, want only the --dns-listen address", d.native, d.srv.Addrs())
	}
}

// canceled is a done context: Run closes the server's sockets at once.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestStartDNSGatewayOfAnotherInterface: a subnet whose gateway address
// another interface has (here lo's 127.0.0.1) is not served: those
// queries are another network's.
func TestStartDNSGatewayOfAnotherInterface(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := startDNS(st, DNSOptions{NoDocker: true}, NativeOptions{Subnet: netip.MustParsePrefix("127.0.0.0/24")}, log)
	if err != nil || d != nil {
		t.Fatalf("startDNS = %v %v, want no node DNS", d, err)
	}
}
