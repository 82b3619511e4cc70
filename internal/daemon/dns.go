package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/berth-dev/berth/internal/driver/docker"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network/cni"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/store"
)

// DNSOptions configure the node DNS server of `berth up` and `berth
// agent` (see docs/dns.md).
type DNSOptions struct {
	// Disabled turns node DNS off: workloads use the host's resolvers.
	Disabled bool
	// Listen are more addresses to serve on (e.g. 127.0.0.1:5353 for the
	// host); failing to bind one is an error.
	Listen []string
	// NoDocker leaves Docker's default bridge out when the node has no
	// berth Docker network: docker containers keep the engine's default
	// DNS. Otherwise berth also serves on the docker0 gateway when that
	// interface exists and its port 53 is free, and docker containers get
	// it as their name server. On the berth network it always serves.
	NoDocker bool
	// Upstreams replace the name servers of /etc/resolv.conf for names
	// outside berth ("host:port").
	Upstreams []string
}

// DockerBridge is Docker's default bridge interface.
const DockerBridge = "docker0"

// nodeDNS is the bound DNS server and the addresses workloads use.
type nodeDNS struct {
	srv *dns.Server
	// native is the node network gateway's address (invalid: not served).
	native netip.Addr
	// docker is the Docker network gateway's address: the berth network's
	// or docker0's (invalid: not served).
	docker netip.Addr
}

// dnsPort is where workloads' resolvers send queries.
const dnsPort = "53"

// gateways are the optional addresses node DNS serves workloads on.
type gateways struct {
	// native is the node network's gateway (the CNI bridge address).
	native netip.Addr
	// docker is the gateway of the berth Docker network, or docker0's.
	docker netip.Addr
}

// nodeGateways are the gateways of the node network n (unless it is off
// or another interface already holds its gateway address) and of dockNet
// (nil: docker0 when it exists, unless o.NoDocker).
func nodeGateways(o DNSOptions, n NativeOptions, dockNet *docker.Network, log *slog.Logger) gateways {
	var g gateways
	if !n.Disabled && !n.NoNetwork {
		subnet := n.Subnet
		if !subnet.IsValid() {
			subnet = cni.DefaultSubnet
		}
		gw := subnet.Masked().Addr().Next()
		bridge := n.Bridge
		if bridge == "" {
			bridge = cni.DefaultBridgeName
		}
		if other := interfaceWith(gw); other != "" && other != bridge {
			// Another network holds the gateway address (the node network
			// will refuse the overlapping subnet too): not ours to serve.
			log.Warn("node DNS not served on the node network: its gateway address belongs to another interface",
				"addr", gw, "interface", other)
		} else {
			g.native = gw
		}
	}
	switch {
	case dockNet != nil:
		g.docker = dockNet.Gateway
	case !o.NoDocker:
		g.docker = interfaceIPv4(DockerBridge)
	}
	return g
}

// startDNS binds the node DNS server, reading the cluster from src: on
// the gateways (bound before their bridges exist) and on o.Listen. The
// gateways are optional: when their port 53 is taken (another berth on
// this host) berth runs without them, with a warning. It returns nil when
// DNS is off or no gateway could be bound and o.Listen is empty.
func startDNS(src dns.Source, o DNSOptions, g gateways, log *slog.Logger) (*nodeDNS, error) {
	if o.Disabled {
		return nil, nil
	}
	var optional []string
	for _, a := range []netip.Addr{g.native, g.docker} {
		if a.IsValid() {
			optional = append(optional, net.JoinHostPort(a.String(), dnsPort))
		}
	}
	if len(optional)+len(o.Listen) == 0 {
		return nil, nil
	}
	srv, err := dns.New(dns.Options{Source: src, Listen: o.Listen, Optional: optional,
		Upstreams: o.Upstreams, Log: log})
	if err != nil && len(o.Listen) == 0 {
		// Only optional addresses, none free: run without node DNS.
		log.Warn("node DNS not started: its addresses are taken; workloads use the host's resolvers", "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d := &nodeDNS{srv: srv}
	bound := srv.Addrs()
	if g.native.IsValid() && slices.Contains(bound, net.JoinHostPort(g.native.String(), dnsPort)) {
		d.native = g.native
	}
	if g.docker.IsValid() && slices.Contains(bound, net.JoinHostPort(g.docker.String(), dnsPort)) {
		d.docker = g.docker
	}
	return d, nil
}

// useDocker points docker containers at node DNS: those on the berth
// network dockNet, or else (o not nil) on Docker's default bridge
// through o.
func (d *nodeDNS) useDocker(o *docker.Options, dockNet *docker.Network) {
	if d == nil || !d.docker.IsValid() {
		return
	}
	if dockNet != nil {
		dockNet.DNS = []netip.Addr{d.docker}
	} else if o != nil {
		o.DNS = []netip.Addr{d.docker}
	}
}

// run serves until ctx ends.
func (d *nodeDNS) run(ctx context.Context) error { return d.srv.Run(ctx) }

// interfaceIPv4 is the first IPv4 address of interface name; invalid
// when there is no such interface or it has none.
func interfaceIPv4(name string) netip.Addr {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// interfaceWith is the name of the interface that has address a, or "".
func interfaceWith(a netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr() == a {
				return ifc.Name
			}
		}
	}
	return ""
}

// agentNet is what an agent learns once the server gave its node a
// subnet: the berth Docker network and the node DNS addresses. Drivers
// ask for them at start and wait (bounded by the subnet wait) until run
// has them.
type agentNet struct {
	ready chan struct{}
	// Set before ready is closed.
	dockNet   *docker.Network
	nativeDNS netip.Addr
}

func newAgentNet() *agentNet { return &agentNet{ready: make(chan struct{})} }

// agentNetOptions configure agentNet.run.
type agentNetOptions struct {
	Store  store.Store
	Source dns.Source
	Node   string
	DNS    DNSOptions
	Native NativeOptions
	// DockerNetwork names the berth Docker network; NoDocker: none.
	DockerNetwork string
	NoDocker      bool
	Log           *slog.Logger
}

// run waits for the node's subnet (at most o.Native.SubnetWait; then
// the node has no berth Docker network and DNS uses the fallback node
// network), starts node DNS on the gateways, and serves until ctx ends.
func (a *agentNet) run(ctx context.Context, o agentNetOptions) {
	nativeNet := !o.Native.Disabled && !o.Native.NoNetwork
	if o.NoDocker && (o.DNS.Disabled || len(o.DNS.Listen) == 0 && !nativeNet) {
		close(a.ready) // nothing to serve or attach (e.g. simulated agents)
		return
	}
	wait := o.Native.SubnetWait
	if wait <= 0 {
		wait = DefaultSubnetWait
	}
	subnet := waitNodeSubnet(ctx, o.Store, o.Node, wait, o.Log)
	if subnet != "" {
		if p, _, err := model.NativeSubnet(subnet); err == nil {
			o.Native.Subnet = p // as nodeNet starts the bridge
		}
		if !o.NoDocker {
			n, err := docker.NetworkFor(o.DockerNetwork, subnet)
			if err != nil {
				o.Log.Warn("no berth Docker network: bad node subnet", "subnet", subnet, "err", err)
			}
			a.dockNet = n
		}
	}
	// Docker's default bridge is not served: without a berth network
	// docker containers keep the engine's DNS.
	o.DNS.NoDocker = true
	d, err := startDNS(o.Source, o.DNS, nodeGateways(o.DNS, o.Native, a.dockNet, o.Log), o.Log)
	if err != nil {
		o.Log.Error("node DNS not started; workloads use the host's resolvers (fix --dns-listen)", "err", err)
	}
	if d != nil {
		a.nativeDNS = d.native
		d.useDocker(nil, a.dockNet)
	}
	close(a.ready)
	if d == nil {
		return
	}
	o.Log.Info("node DNS is up", "listen", d.srv.Addrs(), "upstreams", d.srv.Upstreams())
	if err := d.run(ctx); err != nil && ctx.Err() == nil {
		o.Log.Error("node DNS stopped", "err", err)
	}
}

// wait blocks until run has the node's network, or ctx ends.
func (a *agentNet) wait(ctx context.Context) bool {
	select {
	case <-a.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// dockerNetwork is the docker driver's NetworkFrom.
func (a *agentNet) dockerNetwork(ctx context.Context) (*docker.Network, error) {
	if !a.wait(ctx) {
		return nil, fmt.Errorf("waiting for this node's subnet: %w", ctx.Err())
	}
	return a.dockNet, nil
}

// nodeDNS is driver oci's DNSFrom: the node DNS address on the node
// network (invalid: the host's resolvers).
func (a *agentNet) nodeDNS(ctx context.Context) netip.Addr {
	if !a.wait(ctx) {
		return netip.Addr{}
	}
	return a.nativeDNS
}

// waitNodeSubnet returns node's subnet once the server allocated it, or
// "" after wait or when ctx ends.
func waitNodeSubnet(ctx context.Context, st store.Store, node string, wait time.Duration, log *slog.Logger) string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	found := make(chan string, 1)
	go watchNodes(ctx, st, log, func(m map[string]model.Node) {
		if s := m[node].Subnet; s != "" {
			select {
			case found <- s:
			default:
			}
			cancel()
		}
	})
	select {
	case s := <-found:
		return s
	case <-ctx.Done():
		select {
		case s := <-found:
			return s
		default:
			return ""
		}
	}
}
