package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// staticFilter refuses a node for an ask with a reason, or returns "". Its
// answer depends only on the node and the ask's spec, never on what is
// reserved, so one call computes it once per node and spec.
type staticFilter func(c *call, n *nodeState, a *Ask) string

// staticFilters run in order; the first refusal is the node's reason.
// nodeReady must stay first (MatchesNode skips it).
var staticFilters = []staticFilter{nodeReady, driverAvailable, runtimeInstalled, gpuCapacity, staticConstraints}

func nodeReady(_ *call, n *nodeState, _ *Ask) string {
	switch {
	case n.node.Status != model.NodeReady:
		return "node " + orDash(n.node.Status)
	case n.node.Cordoned:
		return "node cordoned"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "not ready"
	}
	return s
}

func driverAvailable(_ *call, n *nodeState, a *Ask) string {
	d := a.Driver
	if d == "" {
		d = model.DefaultDriver
	}
	if !n.node.HasDriver(d) {
		return fmt.Sprintf("driver %q not available", d)
	}
	return ""
}

func runtimeInstalled(_ *call, n *nodeState, a *Ask) string {
	if a.Runtime != "" && !n.node.HasRuntime(a.Runtime) {
		return fmt.Sprintf("runtime %q not installed", a.Runtime)
	}
	return ""
}

func gpuCapacity(_ *call, n *nodeState, a *Ask) string {
	if a.Resources.GPUs > 0 && a.Resources.GPUs > len(n.node.GPUIndexes()) {
		if len(n.node.GPUIndexes()) == 0 {
			return "no gpus"
		}
		return fmt.Sprintf("too few gpus (need %d, has %d)", a.Resources.GPUs, len(n.node.GPUIndexes()))
	}
	return ""
}

// staticConstraints checks the constraints that depend only on the node,
// and that the node has the attribute the others need.
func staticConstraints(c *call, n *nodeState, a *Ask) string {
	for i := range a.Constraints {
		k := &a.Constraints[i]
		if !k.Static() {
			if _, has := n.node.Attribute(k.Target()); !has {
				return fmt.Sprintf("constraint %s %s: node has no %s", model.FieldName(k.Target()), k.Op, model.FieldName(k.Target()))
			}
			continue
		}
		if !c.holds(n.node, k) {
			want := string(k.Value)
			if k.Op == model.OpIn {
				want = fmt.Sprint(k.Values)
			}
			return fmt.Sprintf("constraint %s %s %s not met", model.FieldName(k.Target()), k.Op, want)
		}
	}
	return ""
}

// holds evaluates a static constraint on a node.
func (c *call) holds(n *model.Node, k *model.Constraint) bool {
	v, has := n.Attribute(k.Target())
	switch k.Op {
	case model.OpEquals, model.OpIs, model.OpCluster:
		return has && v == string(k.Value)
	case model.OpNotEquals:
		return !has || v != string(k.Value)
	case model.OpIn:
		for _, w := range k.Values {
			if has && v == w {
				return true
			}
		}
		return false
	case model.OpLike:
		return has && c.match(string(k.Value), v)
	case model.OpUnlike:
		return !has || !c.match(string(k.Value), v)
	}
	return false
}

// staticKey identifies the part of an ask the static filters read.
func staticKey(a *Ask) string {
	var b strings.Builder
	b.WriteString(a.Driver)
	b.WriteByte(0)
	b.WriteString(a.Runtime)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(a.Resources.GPUs))
	for _, k := range a.Constraints {
		b.WriteByte(0)
		b.WriteString(k.Target())
		b.WriteByte(1)
		b.WriteString(k.Op)
		b.WriteByte(1)
		b.WriteString(string(k.Value))
		for _, v := range k.Values {
			b.WriteByte(2)
			b.WriteString(v)
		}
	}
	return b.String()
}

// staticReasons returns the static refusal of every node for a, by node
// index, computed once per distinct staticKey.
func (s *scheduler) staticReasons(a *Ask) []string {
	key := staticKey(a)
	if r, ok := s.static[key]; ok {
		return r
	}
	r := make([]string, len(s.nodes))
	for _, n := range s.nodes {
		for _, f := range staticFilters {
			if reason := f(s.call, n, a); reason != "" {
				r[n.idx] = reason
				break
			}
		}
	}
	s.static[key] = r
	return r
}

// askCtx is one ask prepared against the call's state: its dynamic
// constraints and affinities resolved to interned fields and indexes.
type askCtx struct {
	s      *scheduler
	a      *Ask
	self   *appIndex
	counts []countRule
	groups []groupRule
	// required are affinity filters; preferred are affinity scores.
	required, preferred []affinityRule
	spread              *fieldIndex
	hasSpread           bool
	binpack             bool
}

// countRule is UNIQUE, MAX_PER or a CLUSTER without a value.
type countRule struct {
	f         *fieldIndex // nil: hostname
	name, op  string
	max       int
	cluster   int32 // value id CLUSTER follows; -1 before the first instance
	clusterTo string
}

// groupRule is GROUP_BY with its optional number of groups.
type groupRule struct {
	f      *fieldIndex
	name   string
	groups int
}

// affinityRule is one affinity resolved to the other app's index.
type affinityRule struct {
	target   *appIndex
	app      string
	f        *fieldIndex
	where    string
	anti     bool
	selfBoot bool // affinity to the app itself with no instance yet
}

// fieldFor resolves a field; nil stands for hostname (the node itself).
func (s *scheduler) fieldFor(name string) *fieldIndex {
	if name == model.FieldHostname {
		return nil
	}
	return s.field(name)
}

func (s *scheduler) prepare(a *Ask) *askCtx {
	pc := &askCtx{s: s, a: a, self: s.app(a.Namespace, a.App), binpack: a.Strategy == model.StrategyBinpack}
	if a.Spread != nil {
		pc.spread, pc.hasSpread = s.fieldFor(a.Spread.Field), true
	}
	for i := range a.Constraints {
		k := &a.Constraints[i]
		f := s.fieldFor(k.Target())
		name := model.FieldName(k.Target())
		switch k.Op {
		case model.OpUnique:
			pc.counts = append(pc.counts, countRule{f: f, name: name, op: k.Op, max: 1})
		case model.OpMaxPer:
			n, _ := strconv.Atoi(string(k.Value))
			pc.counts = append(pc.counts, countRule{f: f, name: name, op: k.Op, max: n})
		case model.OpCluster:
			if k.Value == "" {
				r := countRule{f: f, name: name, op: k.Op, cluster: -1}
				if f == nil {
					r.f = s.field(model.FieldHostname)
				}
				if v := pc.self.mostCommon(r.f); v != "" {
					r.clusterTo = v
					for id, name := range r.f.names {
						if id != missing && name == v {
							r.cluster = int32(id)
						}
					}
				}
				pc.counts = append(pc.counts, r)
			}
		case model.OpGroupBy:
			n, _ := strconv.Atoi(string(k.Value))
			if f == nil {
				f = s.field(model.FieldHostname)
			}
			pc.groups = append(pc.groups, groupRule{f: f, name: name, groups: n})
		}
	}
	for _, af := range a.Affinity {
		ns := af.Namespace
		if ns == "" {
			ns = a.Namespace
		}
		r := affinityRule{target: s.app(ns, af.App), app: af.App, f: s.fieldFor(af.AffinityField()),
			where: where(af.AffinityField()), anti: af.Anti}
		r.selfBoot = !af.Anti && ns == a.Namespace && af.App == a.App && r.target.total == 0
		if af.Required {
			pc.required = append(pc.required, r)
		} else {
			pc.preferred = append(pc.preferred, r)
		}
	}
	return pc
}

// dynamic runs the filters that depend on what is reserved.
func (pc *askCtx) dynamic(n *nodeState) string {
	for i := range pc.counts {
		r := &pc.counts[i]
		switch r.op {
		case model.OpUnique:
			if pc.self.countAt(n, r.f) > 0 {
				return "UNIQUE " + r.name + " already used"
			}
		case model.OpMaxPer:
			if pc.self.countAt(n, r.f) >= r.max {
				return fmt.Sprintf("MAX_PER %s %d reached", r.name, r.max)
			}
		case model.OpCluster:
			if r.cluster >= 0 && r.f.ids[n.idx] != r.cluster {
				return fmt.Sprintf("CLUSTER %s: the app runs in %s=%s", r.name, r.name, r.clusterTo)
			}
		}
	}
	for i := range pc.required {
		r := &pc.required[i]
		near := r.target.countAt(n, r.f) > 0
		switch {
		case r.anti && near:
			return fmt.Sprintf("anti-affinity: %s already %s", r.app, r.where)
		case !r.anti && !near && !r.selfBoot:
			return fmt.Sprintf("affinity: no %s %s", r.app, r.where)
		}
	}
	return resourcesFit(n, pc.a)
}

func where(field string) string {
	if field == model.FieldHostname {
		return "on this node"
	}
	return "in this " + model.FieldName(field)
}

// resourcesFit checks cpu, memory, GPUs and host ports.
func resourcesFit(n *nodeState, a *Ask) string {
	if a.Resources.CPU > 0 && a.Resources.CPU > n.freeCPU() {
		return fmt.Sprintf("insufficient cpu (need %s, free %s)", a.Resources.CPU, max(n.freeCPU(), 0))
	}
	if a.Resources.Memory > 0 && a.Resources.Memory > n.freeMem() {
		return fmt.Sprintf("insufficient memory (need %s, free %s)", a.Resources.Memory, max(n.freeMem(), 0))
	}
	if a.Resources.GPUs > len(n.freeGPUs) {
		return fmt.Sprintf("insufficient gpus (need %d, free %d)", a.Resources.GPUs, len(n.freeGPUs))
	}
	for _, p := range a.Ports {
		if p.HostPort > 0 && n.ports[p.HostPort] {
			return fmt.Sprintf("host port %d in use", p.HostPort)
		}
	}
	if len(a.Ports) > 0 && n.freePortCount() < len(a.Ports) {
		return "no free host ports in range"
	}
	return ""
}

// groupBy keeps, for every GROUP_BY rule, the fitting nodes whose value
// has the fewest instances, so instances spread evenly across values.
func (pc *askCtx) groupBy(fit []*nodeState, refused *refusals) []*nodeState {
	for _, g := range pc.groups {
		counts := pc.self.values(g.f)
		seen := make([]bool, len(g.f.names))
		distinct, least := 0, int32(-1)
		for _, n := range fit {
			id := g.f.ids[n.idx]
			if !seen[id] {
				seen[id] = true
				distinct++
				if c := counts[id]; least < 0 || c < least {
					least = c
				}
			}
		}
		waiting := distinct < g.groups
		if waiting {
			least = 0 // the groups not seen yet have none
		}
		out := fit[:0]
		for _, n := range fit {
			switch {
			case counts[g.f.ids[n.idx]] <= least:
				out = append(out, n)
			case refused == nil:
			case waiting:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: waiting for %d values, %d fit", g.name, g.groups, distinct))
			default:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: other values have fewer instances", g.name))
			}
		}
		fit = out
	}
	return fit
}

// score rates a fitting node; compared field by field, higher is better:
// preferred affinity first, then spread across an attribute, then the
// strategy (spread or binpack).
type score struct {
	affinity int
	spread   int
	strategy float64
}

func (s score) better(o score) bool {
	if s.affinity != o.affinity {
		return s.affinity > o.affinity
	}
	if s.spread != o.spread {
		return s.spread > o.spread
	}
	return s.strategy > o.strategy
}

func (pc *askCtx) score(n *nodeState) score {
	var sc score
	for i := range pc.preferred {
		r := &pc.preferred[i]
		if r.target.countAt(n, r.f) > 0 {
			if r.anti {
				sc.affinity--
			} else {
				sc.affinity++
			}
		}
	}
	if pc.hasSpread {
		sc.spread = -pc.self.countAt(n, pc.spread)
	}
	if pc.binpack {
		sc.strategy = -freeFraction(n, pc.a)
	} else {
		// Fewest instances of the app on the node, then most free.
		sc.strategy = -float64(pc.self.perNode[n.idx])*10 + freeFraction(n, pc.a)
	}
	return sc
}

// freeFraction is the node's mean free share of cpu and memory after the
// ask would be placed.
func freeFraction(n *nodeState, a *Ask) float64 {
	frac := func(free, total int64) float64 {
		if total <= 0 {
			return 0
		}
		return float64(free) / float64(total)
	}
	c := frac(int64(n.freeCPU()-a.Resources.CPU), int64(n.capCPU))
	m := frac(int64(n.freeMem()-a.Resources.Memory), int64(n.capMem))
	return (c + m) / 2
}
