package scheduler

import (
	"sort"

	"github.com/berth-dev/berth/internal/model"
)

// scheduler is the state of one Schedule call.
type scheduler struct {
	nodes  []*nodeState // sorted by name; nodeState.idx is the position
	byName map[string]*nodeState
	// placed lists the node of every resource-holding instance, per app
	// ("namespace/app"); apps turns it into an index on first use.
	placed map[string][]int32
	apps   map[string]*appIndex
	// static caches the static filters' refusal per node, by ask
	// signature (staticKey).
	static map[string][]string
	call   *call
	fitBuf []*nodeState
	// cursor is where the next sampled scan starts (see window).
	cursor int
	// classes dedupes node classes by signature (explain.go).
	classes map[string]*nodeClass
	// fields interns node attribute values per field (index.go).
	fields map[string]*fieldIndex
}

// call holds per-call caches shared by the filters.
type call struct {
	regex map[string]regexpResult
}

// nodeState is a node with what is already reserved on it. The fields
// every ask reads come first, so a scan over thousands of nodes touches
// one cache line per node.
type nodeState struct {
	idx     int
	capCPU  model.MilliCPU
	usedCPU model.MilliCPU
	capMem  model.ByteSize
	usedMem model.ByteSize
	// portLo and portHi bound the node's host port range.
	portLo, portHi int
	// usedInRange counts ports of the node's range in use.
	usedInRange int
	node        *model.Node
	// ports are host port numbers in use (for any protocol: a port is
	// reserved whole, which keeps the bookkeeping simple and safe).
	ports map[int]bool
	// freeGPUs are the device indexes not reserved, ascending.
	freeGPUs []int
	// class is the node's attribute signature, computed on first refusal.
	class *nodeClass
}

func newScheduler(snap Snapshot) *scheduler {
	s := &scheduler{byName: make(map[string]*nodeState, len(snap.Nodes)), placed: map[string][]int32{},
		apps: map[string]*appIndex{}, static: map[string][]string{},
		call: &call{regex: map[string]regexpResult{}}}
	nodes := snap.NodeRefs[:len(snap.NodeRefs):len(snap.NodeRefs)]
	for i := range snap.Nodes {
		nodes = append(nodes, &snap.Nodes[i])
	}
	s.nodes = make([]*nodeState, 0, len(nodes))
	for _, n := range nodes {
		st := newNodeState(n)
		for _, p := range n.PortsInUse {
			st.usePort(p)
		}
		s.byName[n.Name] = st
		s.nodes = append(s.nodes, st)
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].node.Name < s.nodes[j].node.Name })
	for i, n := range s.nodes {
		n.idx = i
	}
	insts := snap.InstanceRefs[:len(snap.InstanceRefs):len(snap.InstanceRefs)]
	for i := range snap.Instances {
		insts = append(insts, &snap.Instances[i])
	}
	for _, in := range insts {
		st, ok := s.byName[in.Node]
		if !ok || in.Terminal() {
			continue
		}
		st.usedCPU += in.Resources.CPU
		st.usedMem += in.Resources.Memory
		for _, p := range in.HostPorts {
			st.usePort(p)
		}
		st.holdGPUs(in.GPUs, in.Resources.GPUs)
		k := appKey(in.Namespace, in.App)
		s.placed[k] = append(s.placed[k], int32(st.idx))
	}
	return s
}

func newNodeState(n *model.Node) *nodeState {
	st := &nodeState{node: n, capCPU: n.Capacity.CPU, capMem: n.Capacity.Memory,
		ports: map[int]bool{}, freeGPUs: n.GPUIndexes()}
	r := n.PortRange
	if r[0] <= 0 || r[1] < r[0] {
		r = model.DefaultPortRange
	}
	st.portLo, st.portHi = r[0], r[1]
	return st
}

func appKey(ns, app string) string { return ns + "/" + app }

func (s *nodeState) usePort(p int) {
	if s.ports[p] {
		return
	}
	s.ports[p] = true
	if lo, hi := s.portRange(); p >= lo && p <= hi {
		s.usedInRange++
	}
}

func (s *nodeState) freeCPU() model.MilliCPU { return s.capCPU - s.usedCPU }
func (s *nodeState) freeMem() model.ByteSize { return s.capMem - s.usedMem }

func (s *nodeState) portRange() (int, int) { return s.portLo, s.portHi }

// holdGPUs removes an existing instance's devices from the free list; an
// instance that asked for more GPUs than it lists holds the lowest free
// ones too, so counts stay right for records written before indexes.
func (s *nodeState) holdGPUs(indexes []int, count int) {
	for _, g := range indexes {
		for i, f := range s.freeGPUs {
			if f == g {
				s.freeGPUs = append(s.freeGPUs[:i:i], s.freeGPUs[i+1:]...)
				break
			}
		}
	}
	if extra := min(count-len(indexes), len(s.freeGPUs)); extra > 0 {
		s.freeGPUs = s.freeGPUs[extra:]
	}
}

// takeGPUs reserves the k lowest free device indexes; check has verified
// that there are enough.
func (s *nodeState) takeGPUs(k int) []int {
	if k <= 0 {
		return nil
	}
	out := append([]int(nil), s.freeGPUs[:k]...)
	s.freeGPUs = s.freeGPUs[k:]
	return out
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

// reserve books an ask's resources and ports on the node (GPUs are taken
// by takeGPUs).
func (s *nodeState) reserve(a *Ask, ports map[string]int) {
	s.usedCPU += a.Resources.CPU
	s.usedMem += a.Resources.Memory
	for _, p := range a.Ports {
		s.usePort(ports[p.Name])
	}
}
