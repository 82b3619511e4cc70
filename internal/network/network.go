// Package network is the seam between drivers and a node's container
// network: each workload gets its own network namespace with an address on
// the node's network and its host ports published. The CNI implementation
// lives in network/cni; the cluster overlay later builds on the same seam.
package network

import (
	"context"
	"net/netip"

	"github.com/berth-dev/berth/internal/driver"
)

// Attachment is one workload's place on the node network.
type Attachment struct {
	// ID is the workload ID the attachment was made for.
	ID string `json:"id"`
	// NetNS is the path of the workload's network namespace (a bind mount
	// that a runtime can join, e.g. /run/netns/berth-<id>).
	NetNS string `json:"netns"`
	// IP is the workload's address on the node network.
	IP netip.Addr `json:"ip"`
	// Gateway is the node's address on that network.
	Gateway netip.Addr `json:"gateway"`
	// Ports are the published host ports.
	Ports []driver.PortBinding `json:"ports,omitempty"`
}

// Node attaches workloads to the node's network. Methods are safe for
// concurrent use; state survives a restart of the process.
type Node interface {
	// Attach creates a network namespace for id, gives it an address and
	// publishes ports on the host. A host port already published for
	// another workload, or held by another process, is refused with an
	// error naming the port ("host port 8080/tcp is already allocated"),
	// and nothing is left behind. Attaching an id that is attached already
	// returns the existing attachment.
	Attach(ctx context.Context, id string, ports []driver.PortBinding) (Attachment, error)
	// Get returns id's attachment, or ok=false.
	Get(ctx context.Context, id string) (a Attachment, ok bool, err error)
	// Detach removes id's ports, address and namespace. Detaching an
	// unknown id is not an error.
	Detach(ctx context.Context, id string) error
}
