package dns

import (
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// Zone is berth's DNS zone as of one store snapshot: every name under
// "berth." with its records. It is immutable; the server swaps in a new
// one on every change.
type Zone struct {
	// Rev is the store revision the zone was built from.
	Rev   int64
	ttl   uint32
	names map[string]*rrset
	soa   *mdns.SOA
}

// rrset holds the records of one name (empty for names that exist only
// because names below them do).
type rrset struct {
	a, aaaa, srv []mdns.RR
}

// Origin is the zone's apex.
const Origin = model.DNSDomain + "."

// DefaultTTL is how long resolvers may cache berth's answers: short, so
// instances coming and going are seen within seconds.
const DefaultTTL = 5 * time.Second

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// isLabel reports whether s can be one DNS label of berth's names.
func isLabel(s string) bool { return len(s) <= 63 && dnsLabel.MatchString(s) }

// InstanceName is an instance's own DNS name,
// "<instance>.<app>.<namespace>.berth.", or "" when the instance ID is
// not a DNS label.
func InstanceName(namespace, app, instance string) string {
	id := strings.ToLower(instance)
	if !isLabel(id) {
		return ""
	}
	return id + "." + model.AppDNSName(namespace, app)
}

// SRVName is the SRV name of an app's port: "_<port>._<proto>.<app>.<namespace>.berth.".
func SRVName(namespace, app, port, proto string) string {
	if proto == "" {
		proto = model.DefaultProtocol
	}
	return "_" + port + "._" + proto + "." + model.AppDNSName(namespace, app)
}

// AppEndpoints is what DNS serves for app: the addresses of its ready
// instances (table.Serves, the router's rule) and an SRV record per
// ready instance and port. An instance with an address of its own (its
// container network's) is served with it and its container ports; one
// without (host network) with its node's address and its host ports,
// and ports without a host port are left out. insts may hold other
// apps' instances; they are ignored.
func AppEndpoints(app *model.App, insts []model.Instance, nodes map[string]*model.Node) model.Endpoints {
	ep := model.Endpoints{Namespace: app.Namespace, App: app.Name, Name: model.AppDNSName(app.Namespace, app.Name),
		Addresses: []model.EndpointAddress{}, SRV: []model.SRVRecord{}}
	hasHealth := app.Spec.Health != nil
	for i := range insts {
		in := &insts[i]
		if in.Namespace != app.Namespace || in.App != app.Name {
			continue
		}
		if !table.Serves(in, hasHealth, nodes) {
			if in.Active() {
				ep.NotReady++
			}
			continue
		}
		addr := model.EndpointAddress{Instance: in.ID, Node: in.Node, IP: in.Status.IP,
			Name: InstanceName(app.Namespace, app.Name, in.ID)}
		if !addr.IP.IsValid() {
			addr.IP, addr.NodeAddress = nodeAddress(nodes[in.Node]), true
		}
		ep.Addresses = append(ep.Addresses, addr)
		if addr.Name == "" {
			continue
		}
		for _, p := range app.Spec.Ports {
			port := p.ContainerPort
			if addr.NodeAddress {
				port = in.HostPorts[p.Name]
			}
			if port <= 0 || !isLabel(p.Name) {
				continue
			}
			ep.SRV = append(ep.SRV, model.SRVRecord{Name: SRVName(app.Namespace, app.Name, p.Name, p.Protocol),
				Target: addr.Name, Port: port, Instance: in.ID})
		}
	}
	sort.Slice(ep.Addresses, func(i, j int) bool { return ep.Addresses[i].Instance < ep.Addresses[j].Instance })
	sort.SliceStable(ep.SRV, func(i, j int) bool {
		if ep.SRV[i].Name != ep.SRV[j].Name {
			return ep.SRV[i].Name < ep.SRV[j].Name
		}
		return ep.SRV[i].Instance < ep.SRV[j].Instance
	})
	return ep
}

// nodeAddress is a node's advertised address, or loopback for a node
// that advertises none (a single-node berth).
func nodeAddress(n *model.Node) netip.Addr {
	if n != nil {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			return a.Unmap()
		}
	}
	return netip.MustParseAddr(table.DefaultNodeAddress)
}

// Build makes the zone of snapshot s with record TTL ttl (DefaultTTL
// when zero). Apps whose namespace or name is not a DNS label are left
// out.
func Build(s table.Snapshot, ttl time.Duration) *Zone {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := uint32(ttl / time.Second)
	if secs == 0 {
		secs = 1
	}
	z := &Zone{Rev: s.Rev, ttl: secs, names: map[string]*rrset{}}
	z.soa = &mdns.SOA{Hdr: mdns.RR_Header{Name: Origin, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: secs},
		Ns: "ns." + Origin, Mbox: "hostmaster." + Origin, Serial: uint32(s.Rev), Refresh: secs, Retry: secs,
		Expire: secs, Minttl: secs}
	z.add(Origin)
	nodes := make(map[string]*model.Node, len(s.Nodes))
	for i := range s.Nodes {
		nodes[s.Nodes[i].Name] = &s.Nodes[i]
	}
	byApp := map[string][]model.Instance{}
	for _, in := range s.Instances {
		k := in.Namespace + "/" + in.App
		byApp[k] = append(byApp[k], in)
	}
	for i := range s.Apps {
		app := &s.Apps[i]
		if !isLabel(app.Namespace) || !isLabel(app.Name) {
			continue
		}
		ep := AppEndpoints(app, byApp[app.Namespace+"/"+app.Name], nodes)
		z.add(ep.Name)
		seen := map[netip.Addr]bool{}
		for _, a := range ep.Addresses {
			if !seen[a.IP] {
				seen[a.IP] = true
				z.addAddr(ep.Name, a.IP)
			}
			if a.Name != "" {
				z.addAddr(a.Name, a.IP)
			}
		}
		for _, r := range ep.SRV {
			z.add(r.Name)
			set := z.names[r.Name]
			set.srv = append(set.srv, &mdns.SRV{Hdr: z.hdr(r.Name, mdns.TypeSRV), Priority: 0, Weight: 10,
				Port: uint16(r.Port), Target: r.Target})
		}
	}
	return z
}

func (z *Zone) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: z.ttl}
}

// add makes name, and every name between it and the origin, exist.
func (z *Zone) add(name string) {
	for n := name; ; {
		if _, ok := z.names[n]; !ok {
			z.names[n] = &rrset{}
		}
		if n == Origin {
			return
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i+1 >= len(n) {
			return
		}
		n = n[i+1:]
	}
}

func (z *Zone) addAddr(name string, ip netip.Addr) {
	z.add(name)
	set := z.names[name]
	if ip.Is4() || ip.Is4In6() {
		set.a = append(set.a, &mdns.A{Hdr: z.hdr(name, mdns.TypeA), A: ip.Unmap().AsSlice()})
	} else {
		set.aaaa = append(set.aaaa, &mdns.AAAA{Hdr: z.hdr(name, mdns.TypeAAAA), AAAA: ip.AsSlice()})
	}
}

// InZone reports whether name (any case, fully qualified) is berth's to
// answer.
func InZone(name string) bool { return mdns.IsSubDomain(Origin, strings.ToLower(name)) }

// Answer is the zone's reply to one question.
type Answer struct {
	Rcode int
	// Answer, Ns (the SOA of a negative answer) and Extra (the addresses
	// of SRV targets) are the message's sections.
	Answer, Ns, Extra []mdns.RR
}

// Lookup answers a question about a name in the zone: NXDOMAIN for a name
// that does not exist (an unknown app), NOERROR with no records for a
// name that exists without records of qtype (an app with no ready
// instance).
func (z *Zone) Lookup(name string, qtype uint16) Answer {
	name = strings.ToLower(mdns.Fqdn(name))
	set, ok := z.names[name]
	if !ok {
		return Answer{Rcode: mdns.RcodeNameError, Ns: []mdns.RR{z.soa}}
	}
	var ans Answer
	switch qtype {
	case mdns.TypeA:
		ans.Answer = set.a
	case mdns.TypeAAAA:
		ans.Answer = set.aaaa
	case mdns.TypeSRV:
		ans.Answer = set.srv
	case mdns.TypeANY:
		ans.Answer = append(append(append([]mdns.RR{}, set.a...), set.aaaa...), set.srv...)
	case mdns.TypeSOA:
		if name == Origin {
			ans.Answer = []mdns.RR{z.soa}
		}
	}
	for _, rr := range ans.Answer {
		if srv, ok := rr.(*mdns.SRV); ok {
			if t, ok := z.names[srv.Target]; ok {
				ans.Extra = append(append(ans.Extra, t.a...), t.aaaa...)
			}
		}
	}
	if len(ans.Answer) == 0 {
		ans.Ns = []mdns.RR{z.soa}
	}
	return ans
}
