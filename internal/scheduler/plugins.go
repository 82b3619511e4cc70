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
		if !c.holds(&n.node, k) {
			want := k.Value
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
		return has && v == k.Value
	case model.OpNotEquals:
		return !has || v != k.Value
	case model.OpIn:
		for _, w := range k.Values {
			if has && v == w {
				return true
			}
		}
		return false
	case model.OpLike:
		return has && c.match(k.Value, v)
	case model.OpUnlike:
		return !has || !c.match(k.Value, v)
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
		b.WriteString(k.Value)
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
// constraints and affinities resolved to indexes.
type askCtx struct {
	a      *Ask
	self   *appIndex
	counts []countRule
	groups []groupRule
	// required are affinity filters; preferred are affinity scores.
	required, preferred []affinityRule
	spread              string
	binpack             bool
}

// countRule is UNIQUE, MAX_PER or a CLUSTER without a value.
type countRule struct {
	field, op string
	max       int
	// cluster is the value CLUSTER follows; "" before the first instance.
	cluster string
}

// groupRule is GROUP_BY with its optional number of groups.
type groupRule struct {
	field  string
	groups int
}

// affinityRule is one affinity resolved to the other app's index.
type affinityRule struct {
	target   *appIndex
	name     string
	field    string
	anti     bool
	selfBoot bool // affinity to the app itself with no instance yet
}

func (s *scheduler) prepare(a *Ask) *askCtx {
	pc := &askCtx{a: a, self: s.app(a.Namespace, a.App), binpack: a.Strategy == model.StrategyBinpack}
	if a.Spread != nil {
		pc.spread = a.Spread.Field
	}
	for i := range a.Constraints {
		k := &a.Constraints[i]
		f := k.Target()
		switch k.Op {
		case model.OpUnique:
			pc.counts = append(pc.counts, countRule{field: f, op: k.Op, max: 1})
		case model.OpMaxPer:
			n, _ := strconv.Atoi(k.Value)
			pc.counts = append(pc.counts, countRule{field: f, op: k.Op, max: n})
		case model.OpCluster:
			if k.Value == "" {
				pc.counts = append(pc.counts, countRule{field: f, op: k.Op, cluster: mostCommon(pc.self.values(f))})
			}
		case model.OpGroupBy:
			n, _ := strconv.Atoi(k.Value)
			pc.groups = append(pc.groups, groupRule{field: f, groups: n})
		}
	}
	for _, af := range a.Affinity {
		ns := af.Namespace
		if ns == "" {
			ns = a.Namespace
		}
		r := affinityRule{target: s.app(ns, af.App), name: af.App, field: af.AffinityField(), anti: af.Anti}
		r.selfBoot = !af.Anti && ns == a.Namespace && af.App == a.App && r.target.total == 0
		if af.Required {
			pc.required = append(pc.required, r)
		} else {
			pc.preferred = append(pc.preferred, r)
		}
	}
	return pc
}

// mostCommon is the value with the most instances (ties: the smallest),
// or "" when there is none.
func mostCommon(m map[string]int) string {
	best, bestN := "", 0
	for v, n := range m {
		if n > bestN || (n == bestN && v < best) {
			best, bestN = v, n
		}
	}
	return best
}

// dynamic runs the filters that depend on what is reserved.
func (pc *askCtx) dynamic(n *nodeState) string {
	for i := range pc.counts {
		r := &pc.counts[i]
		name := model.FieldName(r.field)
		switch r.op {
		case model.OpUnique:
			if pc.self.countAt(n, r.field) > 0 {
				return "UNIQUE " + name + " already used"
			}
		case model.OpMaxPer:
			if pc.self.countAt(n, r.field) >= r.max {
				return fmt.Sprintf("MAX_PER %s %d reached", name, r.max)
			}
		case model.OpCluster:
			if r.cluster != "" && valueOf(n, r.field) != r.cluster {
				return fmt.Sprintf("CLUSTER %s: the app runs in %s=%s", name, name, r.cluster)
			}
		}
	}
	for i := range pc.required {
		r := &pc.required[i]
		near := r.target.countAt(n, r.field) > 0
		switch {
		case r.anti && near:
			return fmt.Sprintf("anti-affinity: %s already %s", r.name, where(r.field))
		case !r.anti && !near && !r.selfBoot:
			return fmt.Sprintf("affinity: no %s %s", r.name, where(r.field))
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
		counts := pc.self.values(g.field)
		seen := map[string]bool{}
		least := -1
		for _, n := range fit {
			v := valueOf(n, g.field)
			if !seen[v] {
				seen[v] = true
				if c := counts[v]; least < 0 || c < least {
					least = c
				}
			}
		}
		waiting := len(seen) < g.groups
		if waiting {
			least = 0 // the groups not seen yet have none
		}
		name := model.FieldName(g.field)
		out := fit[:0]
		for _, n := range fit {
			switch {
			case counts[valueOf(n, g.field)] <= least:
				out = append(out, n)
			case waiting:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: waiting for %d values, %d fit", name, g.groups, len(seen)))
			default:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: other values have fewer instances", name))
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
		if r.target.countAt(n, r.field) > 0 {
			if r.anti {
				sc.affinity--
			} else {
				sc.affinity++
			}
		}
	}
	if pc.spread != "" {
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
	c := frac(int64(n.freeCPU()-a.Resources.CPU), int64(n.node.Capacity.CPU))
	m := frac(int64(n.freeMem()-a.Resources.Memory), int64(n.node.Capacity.Memory))
	return (c + m) / 2
}
