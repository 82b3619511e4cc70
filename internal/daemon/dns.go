package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/berth-dev/berth/internal/network/cni"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/store"
)

// DNSOptions configure the node DNS server of `berth up` (see
// docs/dns.md).
type DNSOptions struct {
	// Disabled turns node DNS off: workloads use the host's resolvers.
	Disabled bool
	// Listen are more addresses to serve on (e.g. 127.0.0.1:5353 for the
	// host); failing to bind one is an error.
	Listen []string
	// NoDocker leaves Docker's default bridge out: docker containers keep
	// the engine's default DNS. Otherwise berth also serves on the docker0
	// gateway when that interface exists and its port 53 is free, and
	// docker containers get it as their name server.
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
	// docker is the docker0 gateway's address (invalid: not served).
	docker netip.Addr
}

// dnsPort is where workloads' resolvers send queries.
const dnsPort = "53"

// startDNS binds the node DNS server: on the node network's gateway (the
// bridge address; it is bound before the bridge exists), on the docker0
// gateway unless o.NoDocker, and on o.Listen. The gateway and docker0
// addresses are optional: when their port 53 is taken (another berth on
// this host) berth runs without them, with a warning. It returns nil when
// DNS is off or no optional address could be bound and o.Listen is empty.
func startDNS(st store.Store, o DNSOptions, n NativeOptions, log *slog.Logger) (*nodeDNS, error) {
	if o.Disabled {
		return nil, nil
	}
	var optional []string
	var gw, dock netip.Addr
	if !n.Disabled && !n.NoNetwork {
		subnet := n.Subnet
		if !subnet.IsValid() {
			subnet = cni.DefaultSubnet
		}
		gw = subnet.Masked().Addr().Next()
		bridge := n.Bridge
		if bridge == "" {
			bridge = cni.DefaultBridgeName
		}
		if other := interfaceWith(gw); other != "" && other != bridge {
			// Another network holds the gateway address (the node network
			// will refuse the overlapping subnet too): not ours to serve.
			log.Warn("node DNS not served on the node network: its gateway address belongs to another interface",
				"addr", gw, "interface", other)
			gw = netip.Addr{}
		} else {
			optional = append(optional, net.JoinHostPort(gw.String(), dnsPort))
		}
	}
	if !o.NoDocker {
		if dock = interfaceIPv4(DockerBridge); dock.IsValid() {
			optional = append(optional, net.JoinHostPort(dock.String(), dnsPort))
		}
	}
	if len(optional)+len(o.Listen) == 0 {
		return nil, nil
	}
	srv, err := dns.New(dns.Options{Source: dns.NewStoreSource(st, log), Listen: o.Listen, Optional: optional,
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
	if gw.IsValid() && slices.Contains(bound, net.JoinHostPort(gw.String(), dnsPort)) {
		d.native = gw
	}
	if dock.IsValid() && slices.Contains(bound, net.JoinHostPort(dock.String(), dnsPort)) {
		d.docker = dock
	}
	return d, nil
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
