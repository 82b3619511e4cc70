package scheduler

import (
	"sort"

	"github.com/berth-dev/berth/internal/model"
)

// nodeState is a node with what is already reserved on it.
type nodeState struct {
	node    model.Node
	usedCPU model.MilliCPU
	usedMem model.ByteSize
	// ports are host port numbers in use (for any protocol: a port is
	// reserved whole, which keeps the bookkeeping simple and safe).
	ports map[int]bool
	// usedInRange counts ports of the node's range in use.
	usedInRange int
	// apps counts instances per namespace/app, for spreading.
	apps map[string]int
}

func newStates(snap Snapshot) []*nodeState {
	byName := map[string]*nodeState{}
	states := make([]*nodeState, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		s := &nodeState{node: n, ports: map[int]bool{}, apps: map[string]int{}}
		for _, p := range n.PortsInUse {
			s.usePort(p)
		}
		byName[n.Name] = s
		states = append(states, s)
	}
	sort.Slice(states, func(i, j int) bool { return states[i].node.Name < states[j].node.Name })
	for i := range snap.Instances {
		in := &snap.Instances[i]
		s, ok := byName[in.Node]
		if !ok || in.Terminal() {
			continue
		}
		s.usedCPU += in.Resources.CPU
		s.usedMem += in.Resources.Memory
		for _, p := range in.HostPorts {
			s.usePort(p)
		}
		s.apps[in.Namespace+"/"+in.App]++
	}
	return states
}

func (s *nodeState) usePort(p int) {
	if s.ports[p] {
		return
	}
	s.ports[p] = true
	if lo, hi := s.portRange(); p >= lo && p <= hi {
		s.usedInRange++
	}
}

func (s *nodeState) freeCPU() model.MilliCPU { return s.node.Capacity.CPU - s.usedCPU }
func (s *nodeState) freeMem() model.ByteSize { return s.node.Capacity.Memory - s.usedMem }

func (s *nodeState) portRange() (int, int) {
	r := s.node.PortRange
	if r[0] <= 0 || r[1] < r[0] {
		r = model.DefaultPortRange
	}
	return r[0], r[1]
}

// assignPorts gives every port its fixed host port or the lowest free one
// in the node's range. check has verified that this succeeds.
func (s *nodeState) assignPorts(ports []model.PortSpec) map[string]int {
	if len(ports) == 0 {
		return nil
	}
	out := make(map[string]int, len(ports))
	taken := map[int]bool{}
	for _, p := range ports {
		if p.HostPort > 0 {
			out[p.Name] = p.HostPort
			taken[p.HostPort] = true
		}
	}
	lo, _ := s.portRange()
	next := lo
	for _, p := range ports {
		if p.HostPort > 0 {
			continue
		}
		for s.ports[next] || taken[next] {
			next++
		}
		out[p.Name] = next
		taken[next] = true
	}
	return out
}

// freePortCount is how many ports of the range are unused.
func (s *nodeState) freePortCount() int {
	lo, hi := s.portRange()
	return hi - lo + 1 - s.usedInRange
}

// reserve books an ask's resources and ports on the node.
func (s *nodeState) reserve(a *Ask, ports map[string]int) {
	s.usedCPU += a.Resources.CPU
	s.usedMem += a.Resources.Memory
	for _, p := range a.Ports {
		s.usePort(ports[p.Name])
	}
	s.apps[a.Namespace+"/"+a.App]++
}
