// Package scheduler decides where instances run. It is pure: it takes a
// snapshot of nodes and instances plus the instances to place and returns a
// Plan. No I/O, no clock, no randomness. The plan is committed elsewhere
// (controller/placement) with optimistic concurrency.
package scheduler

import "github.com/berth-dev/berth/internal/model"

// Ask is one instance to place.
type Ask struct {
	InstanceID  string
	Namespace   string
	App         string
	Resources   model.Resources
	Ports       []model.PortSpec
	Constraints []model.Constraint
	Driver      string
	Strategy    string
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
func Schedule(snap Snapshot, asks []Ask) Plan { panic("TODO(helper)") }
