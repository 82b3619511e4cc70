// Package scheduler decides where instances run. It is pure: it takes a
// snapshot of nodes and instances plus the instances to place and returns a
// Plan. No I/O, no clock, no randomness. The plan is committed elsewhere
// (controller/placement) with optimistic concurrency.
//
// A placement runs filters — static ones that depend only on the node and
// the ask's spec, computed once per call for every ask with the same spec
// (filters.go); dynamic ones that depend on what is reserved: counts of
// instances per attribute value, affinity, capacity (askctx.go) — then
// scorers (score.go). The instances of the snapshot are indexed per app and
// node once per call (index.go), so the cost of one ask is O(nodes), never
// O(nodes × instances); large clusters are sampled (sampling.go). Refusals
// are explained per node class (explain.go).
package scheduler

import (
	"github.com/berth-dev/berth/internal/model"
)

// Ask is one instance to place.
type Ask struct {
	InstanceID string
	Namespace  string
	App        string
	Resources  model.Resources
	Ports      []model.PortSpec
	// Constraints restrict nodes by attribute or label (model.Constraint).
	Constraints []model.Constraint
	// Spread prefers the least used values of an attribute.
	Spread *model.Spread
	// Affinity places near or away from other apps.
	Affinity []model.Affinity
	Driver   string
	// Runtime is the OCI runtime a driver oci app asks for; empty means
	// any node's default.
	Runtime  string
	Strategy string
	// Node pins the ask to one node (system apps); empty means any.
	Node string
}

// AskFor builds the ask of an instance from its revision's spec.
func AskFor(spec *model.AppSpec, in *model.Instance) Ask {
	return Ask{InstanceID: in.ID, Namespace: in.Namespace, App: in.App,
		Resources: in.Resources, Ports: spec.Ports, Constraints: spec.Constraints,
		Spread: spec.Spread, Affinity: spec.Affinity, Driver: spec.Driver,
		Runtime: spec.Runtime, Strategy: spec.Strategy, Node: in.TargetNode}
}

// Snapshot is the cluster state a plan is computed from. Instances that
// have a Node and are not Terminal hold resources, host ports and GPUs
// there, and count for constraints, spread and affinity.
type Snapshot struct {
	Nodes     []model.Node
	Instances []model.Instance
	// NodeRefs and InstanceRefs are more of the same, by reference, for
	// callers that hold shared objects (the server's state cache): the
	// scheduler only reads them, so they need no copy.
	NodeRefs     []*model.Node
	InstanceRefs []*model.Instance
}

// Placement puts one instance on a node with its host ports and GPU
// device indexes.
type Placement struct {
	InstanceID string
	Node       string
	HostPorts  map[string]int
	GPUs       []int
}

// Failure says why an instance could not be placed, e.g.
// "0/1 nodes fit: insufficient memory (need 512Mi, free 200Mi)".
type Failure struct {
	InstanceID string
	Reason     string
}

// Plan is the scheduler's decision for a batch of asks.
type Plan struct {
	Placements []Placement
	Failures   []Failure
}

// Schedule places asks in order onto snap's nodes; placements made earlier
// in the same call count against capacity, constraints, spread and
// affinity for later asks.
func Schedule(snap Snapshot, asks []Ask) Plan {
	s := newScheduler(snap)
	var plan Plan
	for i := range asks {
		a := &asks[i]
		p, reason := s.place(a)
		if reason != "" {
			plan.Failures = append(plan.Failures, Failure{InstanceID: a.InstanceID, Reason: reason})
			continue
		}
		plan.Placements = append(plan.Placements, p)
	}
	return plan
}

// MatchesNode reports why node n can never run a, regardless of what runs
// there or whether it is ready ("" when it can): driver, runtime, GPU
// count and the constraints that depend only on the node. The deployment
// controller uses it to pick the nodes of a system app.
func MatchesNode(n *model.Node, a *Ask) string {
	st := newNodeState(n)
	c := &call{regex: map[string]regexpResult{}}
	for _, f := range staticFilters[1:] { // all but nodeReady
		if r := f(c, st, a); r != "" {
			return r
		}
	}
	return ""
}

// place picks the best fitting node for one ask and reserves it there.
func (s *scheduler) place(a *Ask) (Placement, string) {
	static := s.staticReasons(a)
	pc := s.prepare(a)
	candidates := s.nodes
	if a.Node != "" {
		n, ok := s.byName[a.Node]
		if !ok {
			return Placement{}, "0/1 nodes fit: node " + a.Node + " is not registered"
		}
		candidates = []*nodeState{n}
	}
	var fit []*nodeState
	if s.groupedScan(len(candidates), pc) {
		fit = s.filterGrouped(static, pc, window(len(candidates)))
	} else {
		fit = s.filter(candidates, static, pc, nil, s.window(len(candidates), pc))
	}
	if len(fit) == 0 {
		// Refusals are only collected when nothing fits: the same scan
		// again, recording every node's reason.
		refused := &refusals{s: s}
		s.filter(candidates, static, pc, refused, 0)
		return Placement{}, refused.explain(len(candidates))
	}
	best := fit[0]
	bestScore := pc.score(best)
	for _, n := range fit[1:] {
		if sc := pc.score(n); sc.better(bestScore) { // ties keep the earlier (name order)
			best, bestScore = n, sc
		}
	}
	ports := best.assignPorts(a.Ports)
	gpus := best.takeGPUs(a.Resources.GPUs)
	best.reserve(a, ports)
	pc.self.add(best)
	return Placement{InstanceID: a.InstanceID, Node: best.node.Name, HostPorts: ports, GPUs: gpus}, ""
}

// filter returns the candidates that pass every filter, recording the
// others' reasons in refused when it is not nil. With limit > 0 it
// stops once limit nodes fit, starting at the call's cursor.
func (s *scheduler) filter(candidates []*nodeState, static []string, pc *askCtx, refused *refusals, limit int) []*nodeState {
	fit := s.fitBuf[:0]
	start := 0
	if limit > 0 {
		start = s.cursor % len(candidates)
	}
	for i := range candidates {
		n := candidates[(start+i)%len(candidates)]
		if limit > 0 && len(fit) == limit {
			s.cursor = start + i
			break
		}
		r := static[n.idx]
		if r == "" {
			r = pc.dynamic(n)
		}
		if r == "" {
			fit = append(fit, n)
		} else if refused != nil {
			refused.add(n, r)
		}
	}
	fit = pc.groupBy(fit, refused)
	s.fitBuf = fit
	return fit
}
