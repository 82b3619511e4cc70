package model

import "time"

// Node states.
const (
	NodeReady = "ready"
	NodeDown  = "down"
)

// Node is a host that runs instances. Its agent writes it at start and on
// every heartbeat.
type Node struct {
	Name     string            `json:"name"`
	Hostname string            `json:"hostname"`
	Address  string            `json:"address,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
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
	PortsInUse    []int     `json:"portsInUse,omitempty"`
	Status        string    `json:"status"`
	Cordoned      bool      `json:"cordoned,omitempty"`
	Version       string    `json:"version,omitempty"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
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
