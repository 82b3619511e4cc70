package model

import "time"

// Node states.
const (
	NodeReady = "ready"
	// NodeUnreachable: heartbeats missed for a while; nothing new is
	// placed on it, its instances are kept until it is down.
	NodeUnreachable = "unreachable"
	// NodeDown: silent past the grace; its instances are replaced
	// elsewhere. Only the node controller lifts it, once heartbeats have
	// been steady for a while (hysteresis).
	NodeDown = "down"
)

// Node is a host that runs instances. Its agent writes it at start and on
// every heartbeat.
type Node struct {
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	Address  string `json:"address,omitempty"`
	// AgentAPI is host:port of the agent's own mTLS endpoint (berth agent
	// only), where the server reads instance logs.
	AgentAPI string            `json:"agentAPI,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Region and Zone locate the node; the agent takes them from its
	// labels berth.region and berth.zone. Constraints, spread and
	// affinity use them as fields "region" and "zone".
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Arch (GOARCH names: amd64, arm64), OS (linux) and Kernel (uname -r)
	// are fingerprinted by the agent.
	Arch   string `json:"arch,omitempty"`
	OS     string `json:"os,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	// GPUs lists the node's GPU devices; Capacity.GPUs counts them.
	GPUs []GPU `json:"gpus,omitempty"`
	// Capacity is what the node offers to instances.
	Capacity Resources `json:"capacity"`
	// Drivers lists the drivers that work on this node.
	Drivers []string `json:"drivers"`
	// Runtimes lists the OCI runtimes installed for driver oci, by the
	// names specs use (runc, crun, sandbox).
	Runtimes []string `json:"runtimes,omitempty"`
	// DefaultRuntime is used for driver oci apps that name none.
	DefaultRuntime string `json:"defaultRuntime,omitempty"`
	// PortRange is the range host ports are assigned from, inclusive.
	PortRange [2]int `json:"portRange"`
	// PortsInUse are ports of PortRange found listening on the host at
	// the last heartbeat (by anything); the scheduler does not assign them.
	PortsInUse []int  `json:"portsInUse,omitempty"`
	Status     string `json:"status"`
	Cordoned   bool   `json:"cordoned,omitempty"`
	// Draining: an operator asked to move every instance off (berth node
	// drain); the drain controller clears it once none is left.
	Draining bool `json:"draining,omitempty"`
	// Subnet is the node's slice of the cluster CIDR (e.g. 10.90.3.0/24),
	// allocated by the server when the node registers and held until
	// berth node rm. Server-owned: an agent cannot change it. Split it
	// with NativeSubnet and DockerSubnet (nodenet.go).
	Subnet string `json:"subnet,omitempty"`
	// VTEP is the node's overlay endpoint, written by its agent once the
	// VXLAN device exists. Peers reach it at Address.
	VTEP          *VTEP     `json:"vtep,omitempty"`
	Version       string    `json:"version,omitempty"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
}

// GPU is one GPU device of a node.
type GPU struct {
	// Index is the device index (nvidia-smi's index, CUDA_VISIBLE_DEVICES).
	Index int `json:"index"`
	// Name is the model, e.g. "NVIDIA A100-SXM4-40GB".
	Name string `json:"name,omitempty"`
	// Memory is the device memory.
	Memory ByteSize `json:"memory,omitempty"`
}

// GPUIndexes returns the device indexes instances can be given: those of
// GPUs, or 0..Capacity.GPUs-1 when the node lists no devices.
func (n *Node) GPUIndexes() []int {
	if len(n.GPUs) > 0 {
		out := make([]int, len(n.GPUs))
		for i, g := range n.GPUs {
			out[i] = g.Index
		}
		return out
	}
	out := make([]int, n.Capacity.GPUs)
	for i := range out {
		out[i] = i
	}
	return out
}

// DefaultPortRange is where assigned host ports come from.
var DefaultPortRange = [2]int{20000, 32767}

// HasDriver reports whether the node advertises driver name.
func (n *Node) HasDriver(name string) bool {
	for _, d := range n.Drivers {
		if d == name {
			return true
		}
	}
	return false
}

// HasRuntime reports whether the node advertises OCI runtime name.
func (n *Node) HasRuntime(name string) bool {
	for _, r := range n.Runtimes {
		if r == name {
			return true
		}
	}
	return false
}
