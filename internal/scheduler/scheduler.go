// Package scheduler decides where instances run. It is pure: it takes a
// snapshot of nodes and instances plus the instances to place and returns a
// Plan. No I/O, no clock, no randomness. The plan is committed elsewhere
// (controller/placement) with optimistic concurrency.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// Ask is one instance to place.
type Ask struct {
	InstanceID  string
	Namespace   string
	App         string
	Resources   model.Resources
	Ports       []model.PortSpec
	Constraints []model.Constraint
	Driver      string
	// Runtime is the OCI runtime a driver oci app asks for; empty means
	// any node's default.
	Runtime  string
	Strategy string
}

// Snapshot is the cluster state a plan is computed from. Instances that
// have a Node and are not Terminal hold resources and host ports there.
type Snapshot struct {
	Nodes     []model.Node
	Instances []model.Instance
}

// Placement puts one instance on a node with its host ports.
type Placement struct {
	InstanceID string
	Node       string
	HostPorts  map[string]int
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
// in the same call count against capacity for later asks.
func Schedule(snap Snapshot, asks []Ask) Plan {
	states := newStates(snap)
	var plan Plan
	for i := range asks {
		a := &asks[i]
		p, reason := place(states, a)
		if reason != "" {
			plan.Failures = append(plan.Failures, Failure{InstanceID: a.InstanceID, Reason: reason})
			continue
		}
		plan.Placements = append(plan.Placements, p)
	}
	return plan
}

// place picks the best fitting node for one ask and reserves it there.
func place(states []*nodeState, a *Ask) (Placement, string) {
	var fit []*nodeState
	reasons := map[string]int{}
	for _, n := range states {
		if reason := check(n, a); reason != "" {
			reasons[reason]++
			continue
		}
		fit = append(fit, n)
	}
	if len(fit) == 0 {
		return Placement{}, explain(len(states), reasons)
	}
	scorer := scorerFor(a.Strategy)
	best := fit[0]
	bestScore := scorer(best, a)
	for _, n := range fit[1:] {
		if s := scorer(n, a); s > bestScore { // ties keep the earlier (name order)
			best, bestScore = n, s
		}
	}
	ports := best.assignPorts(a.Ports)
	best.reserve(a, ports)
	return Placement{InstanceID: a.InstanceID, Node: best.node.Name, HostPorts: ports}, ""
}

// check runs every filter; it returns the first refusal.
func check(n *nodeState, a *Ask) string {
	for _, f := range filters {
		if reason := f(n, a); reason != "" {
			return reason
		}
	}
	return ""
}

// explain aggregates refusals like "0/3 nodes fit: 2 insufficient memory
// (need 512Mi, free 200Mi), 1 node cordoned".
func explain(total int, reasons map[string]int) string {
	if total == 0 {
		return "0/0 nodes fit: no nodes registered"
	}
	keys := make([]string, 0, len(reasons))
	for r := range reasons {
		keys = append(keys, r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if reasons[keys[i]] != reasons[keys[j]] {
			return reasons[keys[i]] > reasons[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		if total == 1 {
			parts[i] = k
		} else {
			parts[i] = fmt.Sprintf("%d %s", reasons[k], k)
		}
	}
	return fmt.Sprintf("0/%d nodes fit: %s", total, strings.Join(parts, ", "))
}
