package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver/docker"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// TestStartDNSAddressTaken: when the node network gateway's port 53 is
// held by someone else, berth runs without node DNS (workloads keep the
// host's resolvers) unless --dns-listen asked for an address; then the
// extra address is served and the gateway is not given to workloads.
func TestStartDNSAddressTaken(t *testing.T) {
	st := bolttest.Open(t)
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

	src := dns.NewStoreSource(st, log)
	g := nodeGateways(DNSOptions{NoDocker: true}, native, nil, log)
	d, err := startDNS(src, DNSOptions{NoDocker: true}, g, log)
	if err != nil || d != nil {
		t.Fatalf("gateway taken, no --dns-listen: %v %v, want no node DNS and no error", d, err)
	}
	d, err = startDNS(src, DNSOptions{NoDocker: true, Listen: []string{"127.0.0.1:0"}}, g, log)
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
	st := bolttest.Open(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := DNSOptions{NoDocker: true}
	d, err := startDNS(dns.NewStoreSource(st, log), o, nodeGateways(o, NativeOptions{Subnet: netip.MustParsePrefix("127.0.0.0/24")}, nil, log), log)
	if err != nil || d != nil {
		t.Fatalf("startDNS = %v %v, want no node DNS", d, err)
	}
}

// TestDNSOnBerthDockerNetwork: with a berth Docker network, node DNS
// serves on its gateway (not docker0) and its containers get that
// address as their name server.
func TestDNSOnBerthDockerNetwork(t *testing.T) {
	st := bolttest.Open(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// TEST-NET-1 again: on no interface, bound with IP_FREEBIND.
	dockNet, err := docker.NetworkFor("berth-test-dns", "192.0.2.64/26")
	if err != nil {
		t.Fatal(err)
	}
	o := DNSOptions{}
	g := nodeGateways(o, NativeOptions{Disabled: true}, dockNet, log)
	if g.docker != netip.MustParseAddr("192.0.2.97") || g.native.IsValid() {
		t.Fatalf("gateways %+v, want only the docker half's 192.0.2.97", g)
	}
	d, err := startDNS(dns.NewStoreSource(st, log), o, g, log)
	if err != nil || d == nil {
		t.Fatalf("startDNS: %v %v", d, err)
	}
	defer d.srv.Run(canceled())
	var dockOpts docker.Options
	d.useDocker(&dockOpts, dockNet)
	if len(dockNet.DNS) != 1 || dockNet.DNS[0] != g.docker || len(dockOpts.DNS) != 0 {
		t.Errorf("network DNS %v, default-bridge DNS %v; want the gateway on the network only", dockNet.DNS, dockOpts.DNS)
	}
}

// TestWaitNodeSubnet: an agent learns its subnet once the server writes
// it, and gives up after the wait.
func TestWaitNodeSubnet(t *testing.T) {
	st := bolttest.Open(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	rev, err := store.PutJSON(ctx, st, model.NodeKey("n1"), model.Node{Name: "n1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := waitNodeSubnet(ctx, st, "n1", 300*time.Millisecond, log); s != "" {
		t.Fatalf("no subnet yet: got %q", s)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = store.PutJSON(ctx, st, model.NodeKey("n1"), model.Node{Name: "n1", Subnet: "10.90.4.0/24"}, rev)
	}()
	if s := waitNodeSubnet(ctx, st, "n1", 20*time.Second, log); s != "10.90.4.0/24" {
		t.Fatalf("subnet %q, want 10.90.4.0/24", s)
	}
}

// TestAgentNet: once the agent's node has a subnet, node DNS serves on
// both gateways, the docker driver gets the berth network with node DNS
// as its name server and driver oci gets the node network gateway.
func TestAgentNet(t *testing.T) {
	st := bolttest.Open(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// TEST-NET-2: on no interface, bound with IP_FREEBIND.
	if _, err := store.PutJSON(ctx, st, model.NodeKey("n1"), model.Node{Name: "n1", Subnet: "198.51.100.0/24"}, 0); err != nil {
		t.Fatal(err)
	}
	an := newAgentNet()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		an.run(runCtx, agentNetOptions{Store: st, Source: dns.NewStoreSource(st, log), Node: "n1",
			DNS: DNSOptions{Upstreams: []string{}}, Native: NativeOptions{Bridge: "berth-test-an"}, DockerNetwork: "berth-test-an", Log: log})
	}()
	defer func() { stop(); <-done }()
	n, err := an.dockerNetwork(ctx)
	if err != nil || n == nil || n.Subnet.String() != "198.51.100.128/25" || len(n.DNS) != 1 || n.DNS[0].String() != "198.51.100.129" {
		t.Fatalf("docker network %+v %v, want 198.51.100.128/25 with node DNS on .129", n, err)
	}
	if a := an.nodeDNS(ctx); a.String() != "198.51.100.1" {
		t.Fatalf("oci DNS %v, want the native gateway 198.51.100.1", a)
	}

	// Nothing to serve or attach: ready at once, no network.
	idle := newAgentNet()
	idle.run(ctx, agentNetOptions{Store: st, Node: "n1", NoDocker: true, Native: NativeOptions{Disabled: true}, Log: log})
	if n, err := idle.dockerNetwork(ctx); n != nil || err != nil {
		t.Fatalf("idle agent: %v %v", n, err)
	}
}
