// Package table builds the router's route table from a snapshot of the
// store: for every app with routes, the instances that may take traffic,
// grouped by revision, with their upstream addresses. Build is pure; the
// router rebuilds the table on every relevant store change and swaps it in
// atomically, so a request always sees one consistent table.
package table

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/traffic"
)

// Snapshot is the router's input: everything it routes from, as of store
// revision Rev.
type Snapshot struct {
	Rev       int64
	Apps      []model.App
	Instances []model.Instance
	Nodes     []model.Node
	Certs     []model.Certificate
	// Rollouts carry the traffic split of rollouts in progress; a
	// rollout's Traffic replaces the spec's traffic section on every route
	// of its app.
	Rollouts []model.Rollout
}

// DefaultNodeAddress is used for nodes that advertise no address.
const DefaultNodeAddress = "127.0.0.1"

// Backend is one instance that may take a route's traffic.
type Backend struct {
	// Addr is host:port on the instance's node.
	Addr     string
	Instance string
	Node     string
	Revision int64
}

// Route is one route of one app with its ready backends.
type Route struct {
	// ID names the route in metrics and logs: "ns/app host/path" or
	// "ns/app tcp:port".
	ID        string
	Namespace string
	App       string
	// Spec is the route as stored (normalized by apply).
	Spec   model.Route
	Policy traffic.Policy
	// Backends are every ready backend, sorted by revision then instance.
	Backends []Backend
	// ByRevision groups Backends by revision.
	ByRevision map[int64][]Backend
	// Ready counts Backends by revision, for traffic.Pick.
	Ready map[int64]int
	host  string
	path  string
}

// Candidates returns the backends of revision rev (traffic.Any: all).
func (r *Route) Candidates(rev int64) []Backend {
	if rev == traffic.Any {
		return r.Backends
	}
	return r.ByRevision[rev]
}

// Path is the route's effective path prefix.
func (r *Route) Path() string { return r.path }

// Host is the route's host (possibly "*.domain").
func (r *Route) Host() string { return r.host }

// Table is an immutable route table.
type Table struct {
	// Rev is the store revision the table was built from.
	Rev int64
	// Routes lists every route, sorted by ID.
	Routes []*Route
	// TCP maps router ports to tcp routes.
	TCP map[int]*Route
	// Certs are the stored TLS certificates.
	Certs []model.Certificate
	// Problems says what was left out and why (claimed twice, bad policy).
	Problems []string
	exact    map[string][]*Route
	wildcard map[string][]*Route // by the domain after "*."
}

// Build makes a table from s.
func Build(s Snapshot) *Table {
	t := &Table{Rev: s.Rev, TCP: map[int]*Route{}, Certs: s.Certs,
		exact: map[string][]*Route{}, wildcard: map[string][]*Route{}}
	nodes := make(map[string]*model.Node, len(s.Nodes))
	for i := range s.Nodes {
		nodes[s.Nodes[i].Name] = &s.Nodes[i]
	}
	byApp := map[string][]*model.Instance{}
	for i := range s.Instances {
		in := &s.Instances[i]
		k := in.Namespace + "/" + in.App
		byApp[k] = append(byApp[k], in)
	}
	apps := make([]*model.App, 0, len(s.Apps))
	for i := range s.Apps {
		if len(s.Apps[i].Spec.Routes) > 0 {
			apps = append(apps, &s.Apps[i])
		}
	}
	sort.Slice(apps, func(i, j int) bool {
		if apps[i].Namespace != apps[j].Namespace {
			return apps[i].Namespace < apps[j].Namespace
		}
		return apps[i].Name < apps[j].Name
	})
	split := map[string]*model.Traffic{}
	for i := range s.Rollouts {
		if ro := &s.Rollouts[i]; ro.Traffic != nil {
			split[ro.Namespace+"/"+ro.App] = ro.Traffic
		}
	}
	claimed := map[string]string{}
	for _, app := range apps {
		owner := app.Namespace + "/" + app.Name
		insts := byApp[owner]
		for i := range app.Spec.Routes {
			spec := app.Spec.Routes[i]
			key := spec.ClaimKey()
			if prev, dup := claimed[key]; dup {
				t.Problems = append(t.Problems, fmt.Sprintf("app %s: %s is already routed to app %s; ignored", owner, spec.ClaimName(), prev))
				continue
			}
			tr := spec.Traffic
			if ro, ok := split[owner]; ok {
				tr = ro
			}
			pol, err := traffic.Compile(tr, app.Revision)
			if err != nil {
				t.Problems = append(t.Problems, fmt.Sprintf("app %s routes[%d].traffic: %v; ignored", owner, i, err))
				continue
			}
			claimed[key] = owner
			r := &Route{Namespace: app.Namespace, App: app.Name, Spec: spec, Policy: pol,
				host: strings.ToLower(strings.TrimSuffix(spec.Host, ".")), path: spec.EffectivePath()}
			r.Backends = backends(app, insts, nodes, spec.Port)
			r.ByRevision = map[int64][]Backend{}
			r.Ready = map[int64]int{}
			for _, b := range r.Backends {
				r.ByRevision[b.Revision] = append(r.ByRevision[b.Revision], b)
				r.Ready[b.Revision]++
			}
			if spec.EffectiveProtocol() == model.RouteTCP {
				r.ID = fmt.Sprintf("%s tcp:%d", owner, spec.ListenPort)
				t.TCP[spec.ListenPort] = r
			} else {
				r.ID = owner + " " + r.host + r.path
				if d, ok := strings.CutPrefix(r.host, "*."); ok {
					t.wildcard[d] = append(t.wildcard[d], r)
				} else {
					t.exact[r.host] = append(t.exact[r.host], r)
				}
			}
			t.Routes = append(t.Routes, r)
		}
	}
	for _, m := range []map[string][]*Route{t.exact, t.wildcard} {
		for _, rs := range m {
			sort.Slice(rs, func(i, j int) bool { return len(rs[i].path) > len(rs[j].path) })
		}
	}
	sort.Slice(t.Routes, func(i, j int) bool { return t.Routes[i].ID < t.Routes[j].ID })
	return t
}

// backends returns the instances of app that may take traffic on port:
// desired to run, running, healthy when the app has a health check, on a
// node that is not down, with a host port for the route's port.
func backends(app *model.App, insts []*model.Instance, nodes map[string]*model.Node, port string) []Backend {
	hasHealth := app.Spec.Health != nil
	var out []Backend
	for _, in := range insts {
		if !Serves(in, hasHealth, nodes) {
			continue
		}
		hp := in.HostPorts[port]
		if hp <= 0 {
			continue
		}
		addr := DefaultNodeAddress
		if n, ok := nodes[in.Node]; ok && n.Address != "" {
			addr = n.Address
		}
		out = append(out, Backend{Addr: net.JoinHostPort(addr, strconv.Itoa(hp)), Instance: in.ID, Node: in.Node, Revision: in.Revision})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision < out[j].Revision
		}
		return out[i].Instance < out[j].Instance
	})
	return out
}

// Serves reports whether an instance may take traffic (the router's and
// node DNS's one readiness rule): desired to run, running, healthy when
// its app has a health check, placed on a node that is not down.
func Serves(in *model.Instance, hasHealthCheck bool, nodes map[string]*model.Node) bool {
	if !in.Active() || !in.Ready(hasHealthCheck) || in.Node == "" {
		return false
	}
	n, ok := nodes[in.Node]
	return !ok || n.Status != model.NodeDown
}

// Match returns the http route for host and path: the exact host's
// longest matching path prefix, else the most specific wildcard's; nil
// when none matches. host must be lowercase without a port.
func (t *Table) Match(host, path string) *Route {
	if r := longest(t.exact[host], path); r != nil {
		return r
	}
	for d := host; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return nil
		}
		d = d[i+1:]
		if r := longest(t.wildcard[d], path); r != nil {
			return r
		}
	}
}

// HasHost reports whether any http route is for host (exact or wildcard).
func (t *Table) HasHost(host string) bool {
	if len(t.exact[host]) > 0 {
		return true
	}
	for d := host; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return false
		}
		d = d[i+1:]
		if len(t.wildcard[d]) > 0 {
			return true
		}
	}
}

func longest(rs []*Route, path string) *Route {
	for _, r := range rs {
		if PrefixMatch(r.path, path) {
			return r
		}
	}
	return nil
}

// PrefixMatch reports whether path is under prefix on a segment boundary.
func PrefixMatch(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}
