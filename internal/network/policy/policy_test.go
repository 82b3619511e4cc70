package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

func app(ns, name, network string, allow ...model.NetworkPeer) model.App {
	return model.App{Namespace: ns, Name: name, Spec: model.AppSpec{Name: name, Namespace: ns, Network: network, AllowFrom: allow}}
}

func inst(ns, name, node, ip, state string) model.Instance {
	return model.Instance{ID: name + "-" + ip, Namespace: ns, App: name, Node: node,
		Status: model.InstanceStatus{State: state, IP: netip.MustParseAddr(ip)}}
}

// flows splits "src>dst" strings.
func flows(fs ...string) [][2]netip.Addr {
	var out [][2]netip.Addr
	for _, f := range fs {
		src, dst, _ := strings.Cut(f, ">")
		out = append(out, [2]netip.Addr{netip.MustParseAddr(src), netip.MustParseAddr(dst)})
	}
	return out
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func TestBuild(t *testing.T) {
	const run = model.StateRunning
	cases := []struct {
		name        string
		apps        []model.App
		instances   []model.Instance
		nodes       []model.Node
		ranges      []netip.Prefix
		local       []netip.Addr
		allow, deny []string
	}{{
		name:      "same namespace is one network",
		apps:      []model.App{app("shop", "web", ""), app("shop", "db", "")},
		instances: []model.Instance{inst("shop", "web", "n1", "10.0.0.2", run), inst("shop", "db", "n1", "10.0.0.3", run)},
		local:     addrs("10.0.0.2", "10.0.0.3"),
		allow:     []string{"10.0.0.2>10.0.0.3", "10.0.0.3>10.0.0.2", "10.0.0.2>10.0.0.2"},
	}, {
		name:      "namespaces are isolated, across nodes too; only local destinations are policed",
		apps:      []model.App{app("a", "x", ""), app("b", "y", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run), inst("b", "y", "n1", "10.0.0.3", run), inst("b", "y", "n2", "10.0.1.2", run)},
		local:     addrs("10.0.0.2", "10.0.0.3"),
		allow:     []string{"10.0.1.2>10.0.0.3", "10.0.0.2>10.0.1.2"},
		deny:      []string{"10.0.0.2>10.0.0.3", "10.0.0.3>10.0.0.2", "10.0.1.2>10.0.0.2"},
	}, {
		name:      "host, gateways and outside clients are not policed",
		apps:      []model.App{app("a", "x", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run)},
		local:     addrs("10.0.0.2"),
		allow:     []string{"10.0.0.1>10.0.0.2", "127.0.0.1>10.0.0.2", "192.168.1.5>10.0.0.2"},
	}, {
		name:      "explicit network joins namespaces",
		apps:      []model.App{app("a", "x", "shared"), app("b", "y", "shared"), app("b", "z", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run), inst("b", "y", "n2", "10.0.1.2", run), inst("b", "z", "n2", "10.0.1.3", run)},
		local:     addrs("10.0.0.2"),
		allow:     []string{"10.0.1.2>10.0.0.2"},
		deny:      []string{"10.0.1.3>10.0.0.2"},
	}, {
		name:      "grant by network is one-way",
		apps:      []model.App{app("a", "x", "", model.NetworkPeer{Network: "b"}), app("b", "y", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run), inst("b", "y", "n1", "10.0.0.3", run)},
		local:     addrs("10.0.0.2", "10.0.0.3"),
		allow:     []string{"10.0.0.3>10.0.0.2"},
		deny:      []string{"10.0.0.2>10.0.0.3"},
	}, {
		name: "grant by app names one app only; namespace defaults to the granting app's",
		apps: []model.App{app("a", "x", "", model.NetworkPeer{App: "y", Namespace: "b"}, model.NetworkPeer{App: "w"}),
			app("b", "y", ""), app("b", "z", ""), app("b", "w", ""), app("c", "w", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run), inst("b", "y", "n2", "10.0.1.2", run),
			inst("b", "z", "n2", "10.0.1.3", run), inst("b", "w", "n2", "10.0.1.4", run), inst("c", "w", "n2", "10.0.1.5", run)},
		local: addrs("10.0.0.2"),
		allow: []string{"10.0.1.2>10.0.0.2"},
		deny:  []string{"10.0.1.3>10.0.0.2", "10.0.1.4>10.0.0.2", "10.0.1.5>10.0.0.2"},
	}, {
		name: "dead instances and ones without addresses are ignored; a gone app keeps its namespace's network",
		apps: []model.App{app("a", "x", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", model.StateStopped), inst("a", "x", "n1", "10.0.0.4", run),
			inst("a", "gone", "n2", "10.0.1.9", model.StateStarting), inst("q", "gone", "n2", "10.0.1.8", run),
			{Namespace: "a", App: "x", Node: "n1", Status: model.InstanceStatus{State: run}}},
		local: addrs("10.0.0.4"),
		allow: []string{"10.0.1.9>10.0.0.4", "10.0.0.4>10.0.0.2"},
		deny:  []string{"10.0.1.8>10.0.0.4"},
	}, {
		name: "an address on several nodes is the local one",
		apps: []model.App{app("a", "x", ""), app("b", "y", "")},
		instances: []model.Instance{inst("b", "y", "n2", "172.17.0.2", run), inst("a", "x", "n1", "172.17.0.2", run),
			inst("b", "y", "n3", "172.17.0.2", run), inst("a", "x", "n1", "172.17.0.3", run)},
		local: addrs("172.17.0.2", "172.17.0.3"),
		allow: []string{"172.17.0.2>172.17.0.3"},
	}, {
		name:      "unknown addresses in node ranges are policed, their first two are not",
		apps:      []model.App{app("a", "x", "")},
		instances: []model.Instance{inst("a", "x", "n1", "10.0.0.2", run)},
		nodes:     []model.Node{{Name: "n1", Subnet: "10.90.1.0/24"}, {Name: "n2", Subnet: "10.90.2.0/24"}, {Name: "n3"}},
		ranges:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.90.1.0/25")},
		local:     addrs("10.0.0.2"),
		allow: []string{"10.0.0.1>10.0.0.2", "10.0.0.0>10.0.0.2", "10.90.2.0>10.0.0.2", "10.90.2.1>10.0.0.2",
			"10.90.2.129>10.0.0.2", "10.0.1.5>10.0.0.2"},
		deny: []string{"10.0.0.9>10.0.0.2", "10.90.2.5>10.0.0.2", "10.90.1.200>10.0.0.2"},
	}, {
		name:  "no instances",
		apps:  []model.App{app("a", "x", "")},
		allow: []string{"10.0.0.2>10.0.0.3"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := Input{Node: "n1", Apps: c.apps, Instances: c.instances, Nodes: c.nodes, Ranges: c.ranges}
			got := Build(in)
			var local []netip.Addr
			for _, d := range got.Dests {
				local = append(local, d.Addr)
			}
			if !slices.Equal(local, c.local) {
				t.Errorf("local = %v, want %v", local, c.local)
			}
			for _, f := range flows(c.allow...) {
				if !got.Allowed(f[0], f[1]) {
					t.Errorf("%s → %s denied, want allowed (%+v)", f[0], f[1], got)
				}
			}
			for _, f := range flows(c.deny...) {
				if got.Allowed(f[0], f[1]) {
					t.Errorf("%s → %s allowed, want denied (%+v)", f[0], f[1], got)
				}
			}
			if again := Build(in); !again.Equal(got) {
				t.Errorf("Build is not deterministic:\n%+v\n%+v", got, again)
			}
		})
	}
}

func TestRangesAreDisjoint(t *testing.T) {
	got, exempt := ranges([]model.Node{{Subnet: "10.90.1.0/24"}, {Subnet: "10.90.1.0/24"}, {Subnet: "bad"}},
		[]netip.Prefix{netip.MustParsePrefix("10.90.1.0/25"), netip.MustParsePrefix("10.90.0.0/16"), netip.MustParsePrefix("10.91.0.7/24")})
	want := []netip.Prefix{netip.MustParsePrefix("10.90.0.0/16"), netip.MustParsePrefix("10.91.0.0/24")}
	if !slices.Equal(got, want) {
		t.Errorf("ranges %v, want %v", got, want)
	}
	if !slices.Contains(exempt, netip.MustParseAddr("10.90.1.129")) || !slices.Contains(exempt, netip.MustParseAddr("10.91.0.1")) {
		t.Errorf("exempt %v lacks the gateways", exempt)
	}
}
