// Package policy isolates apps' networks from each other on one node.
//
// Build is pure: the cluster's apps and instances → the Ruleset one node
// enforces, as destination (ingress) filtering of the instances it runs.
// Apply (nft.go) loads a Ruleset into the node's nftables table "berth".
// See docs/network.md, "Isolation".
package policy

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"

	"github.com/berth-dev/berth/internal/model"
)

// Ruleset is what one node enforces. A packet towards a Dest whose
// source is in Sources or Ranges (and not Exempt) passes only when the
// source is in one of the groups the Dest's chain accepts (or it belongs
// to a connection already accepted, or to a published port). Everything
// else (host, gateways, routers, clients outside the cluster) is not
// policed.
type Ruleset struct {
	// Sources are every instance address in the cluster, sorted.
	Sources []netip.Addr
	// Ranges are the instance address ranges of the nodes, sorted, so an
	// instance whose address is not known yet is policed too (it belongs
	// to no group).
	Ranges []netip.Prefix
	// Exempt are each range's first two addresses (the overlay's and the
	// gateway's: the hosts themselves), sorted.
	Exempt []netip.Addr
	// Groups are source addresses, each list sorted, by group name:
	// "net.<network>" for a network's instances and "app.<namespace>.<app>"
	// for an app's. Only groups some chain accepts are listed.
	Groups map[string][]netip.Addr
	// Chains are the groups (sorted) each local app accepts, by chain name
	// "to.<namespace>.<app>".
	Chains map[string][]string
	// Dests are the node's own instance addresses, sorted, with the chain
	// of their app.
	Dests []Dest
}

// Dest is a local instance address and its app's chain.
type Dest struct {
	Addr  netip.Addr
	Chain string
}

// Equal reports whether r and o hold the same rules.
func (r Ruleset) Equal(o Ruleset) bool { return reflect.DeepEqual(r, o) }

// Allowed evaluates r for a new connection from src to dst, as the
// kernel does with the loaded table.
func (r Ruleset) Allowed(src, dst netip.Addr) bool {
	i, local := slices.BinarySearchFunc(r.Dests, dst, func(d Dest, a netip.Addr) int { return d.Addr.Compare(a) })
	if !local {
		return true
	}
	if _, exempt := slices.BinarySearchFunc(r.Exempt, src, netip.Addr.Compare); exempt {
		return true
	}
	_, policed := slices.BinarySearchFunc(r.Sources, src, netip.Addr.Compare)
	for _, p := range r.Ranges {
		policed = policed || p.Contains(src)
	}
	if !policed {
		return true
	}
	for _, g := range r.Chains[r.Dests[i].Chain] {
		if _, ok := slices.BinarySearchFunc(r.Groups[g], src, netip.Addr.Compare); ok {
			return true
		}
	}
	return false
}

// NetworkGroup and AppGroup name source groups.
func NetworkGroup(network string) string { return "net." + network }

// AppGroup names the group of app name in namespace ns.
func AppGroup(ns, name string) string { return "app." + ns + "." + name }

// AppChain names the chain of app name in namespace ns.
func AppChain(ns, name string) string { return "to." + ns + "." + name }

// member is an instance address with what the policy needs of its app.
type member struct {
	addr      netip.Addr
	node      string
	namespace string
	app       string
	network   string
	spec      *model.AppSpec // nil when the app is gone
}

// Input is the cluster as one node sees it.
type Input struct {
	// Node is the node's name.
	Node      string
	Apps      []model.App
	Instances []model.Instance
	// Nodes give their subnets' halves as Ranges.
	Nodes []model.Node
	// Ranges are more instance address ranges (the node network's subnet
	// when it is set apart from the node subnet).
	Ranges []netip.Prefix
}

// Build returns the ruleset of in.Node: its instances (those with an
// IPv4 address that are not stopped, failed or lost) accept traffic from
// instances of their own network and of what their app's allowFrom
// grants. An address held by instances on several nodes (e.g. Docker's
// default bridge, the same on every host) is taken to be the local one:
// such addresses are not routed between nodes.
func Build(in Input) Ruleset {
	node := in.Node
	specs := make(map[[2]string]*model.AppSpec, len(in.Apps))
	for i := range in.Apps {
		specs[[2]string{in.Apps[i].Namespace, in.Apps[i].Name}] = &in.Apps[i].Spec
	}
	byAddr := map[netip.Addr]member{}
	for _, in := range in.Instances {
		if !in.Status.IP.Is4() || !live(in.Status.State) {
			continue
		}
		m := member{addr: in.Status.IP, node: in.Node, namespace: in.Namespace, app: in.App,
			network: in.Namespace, spec: specs[[2]string{in.Namespace, in.App}]}
		if m.spec != nil {
			m.network = m.spec.EffectiveNetwork()
		}
		if old, ok := byAddr[m.addr]; ok && !prefer(m, old, node) {
			continue
		}
		byAddr[m.addr] = m
	}
	r := Ruleset{Groups: map[string][]netip.Addr{}, Chains: map[string][]string{}}
	r.Ranges, r.Exempt = ranges(in.Nodes, in.Ranges)
	members := map[string][]netip.Addr{}
	for a, m := range byAddr {
		r.Sources = append(r.Sources, a)
		members[NetworkGroup(m.network)] = append(members[NetworkGroup(m.network)], a)
		members[AppGroup(m.namespace, m.app)] = append(members[AppGroup(m.namespace, m.app)], a)
	}
	for a, m := range byAddr {
		if m.node != node {
			continue
		}
		chain := AppChain(m.namespace, m.app)
		r.Dests = append(r.Dests, Dest{Addr: a, Chain: chain})
		if _, done := r.Chains[chain]; done {
			continue
		}
		accepts := []string{NetworkGroup(m.network)}
		if m.spec != nil {
			for _, p := range m.spec.AllowFrom {
				if p.App != "" {
					accepts = append(accepts, AppGroup(p.NamespaceOr(m.namespace), p.App))
				} else {
					accepts = append(accepts, NetworkGroup(p.Network))
				}
			}
		}
		slices.Sort(accepts)
		r.Chains[chain] = slices.Compact(accepts)
		for _, g := range r.Chains[chain] {
			if addrs, ok := members[g]; ok {
				r.Groups[g] = addrs
			}
		}
	}
	for _, addrs := range r.Groups {
		slices.SortFunc(addrs, netip.Addr.Compare)
	}
	slices.SortFunc(r.Sources, netip.Addr.Compare)
	slices.SortFunc(r.Dests, func(a, b Dest) int { return a.Addr.Compare(b.Addr) })
	return r
}

// ranges are the node subnets' halves and extra, without duplicates or
// ranges inside others, and their first two addresses.
func ranges(nodes []model.Node, extra []netip.Prefix) ([]netip.Prefix, []netip.Addr) {
	all := slices.Clone(extra)
	for _, n := range nodes {
		if n.Subnet == "" {
			continue
		}
		if p, _, err := model.NativeSubnet(n.Subnet); err == nil {
			all = append(all, p)
		}
		if p, _, err := model.DockerSubnet(n.Subnet); err == nil {
			all = append(all, p)
		}
	}
	var out []netip.Prefix
	var exempt []netip.Addr
	for _, p := range all {
		if p.Addr().Is4() {
			p = p.Masked()
			out = append(out, p)
			exempt = append(exempt, p.Addr(), p.Addr().Next())
		}
	}
	// Shorter prefixes first at equal addresses, so one contained in an
	// earlier one is dropped (prefixes nest or are disjoint).
	slices.SortFunc(out, func(a, b netip.Prefix) int { return cmp.Or(a.Addr().Compare(b.Addr()), a.Bits()-b.Bits()) })
	kept := out[:0]
	for _, p := range out {
		if len(kept) == 0 || !kept[len(kept)-1].Overlaps(p) {
			kept = append(kept, p)
		}
	}
	out = kept
	slices.SortFunc(exempt, netip.Addr.Compare)
	return out, slices.Compact(exempt)
}

// prefer reports whether m should stand for its address instead of old:
// the instance on this node wins, then the lower node name (a stable
// choice between remote duplicates).
func prefer(m, old member, node string) bool {
	if (m.node == node) != (old.node == node) {
		return m.node == node
	}
	return m.node < old.node
}

// live reports whether an instance in state s may hold its address.
func live(s string) bool {
	switch s {
	case model.StateStopped, model.StateFailed, model.StateLost:
		return false
	}
	return true
}
