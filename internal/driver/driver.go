// Package driver defines the runtime seam: how the agent starts, stops,
// inspects and reattaches to workloads. Implementations live in
// sub-packages (docker, mock, later oci and process) and all pass the
// drivertest conformance suite.
package driver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Labels set on every workload so the agent can find and reattach to it.
const (
	LabelManaged   = "berth.managed" // always "true"
	LabelApp       = "berth.app"
	LabelInstance  = "berth.instance"
	LabelRevision  = "berth.revision"
	LabelNamespace = "berth.namespace"
	LabelNode      = "berth.node"
)

// ErrNotFound is returned for a workload handle the runtime does not know.
var ErrNotFound = errors.New("driver: workload not found")

// PortBinding publishes ContainerPort on the host's HostPort.
type PortBinding struct {
	Name          string
	ContainerPort int
	HostPort      int
	// Protocol is "tcp" or "udp".
	Protocol string
}

// Task is everything a driver needs to run one instance.
type Task struct {
	// InstanceID is berth's instance ID; drivers name the workload after it.
	InstanceID string
	Namespace  string
	App        string
	Revision   int64
	Image      string
	// Command replaces the entrypoint when non-empty; Args the default args.
	Command []string
	Args    []string
	Env     map[string]string
	// CPUMilli and MemoryBytes are limits; zero means unlimited.
	CPUMilli    int64
	MemoryBytes int64
	Ports       []PortBinding
	// Labels are added to the driver's own labels (Label* constants),
	// which take precedence.
	Labels map[string]string
	// Runtime picks the OCI runtime for drivers that have several
	// ("runc", "crun", "runsc"); empty means the node's default. Other
	// drivers ignore it.
	Runtime string
	// User runs the process as "uid[:gid]" or a user name known to the
	// image; empty means the image's default.
	User string
	// WorkingDir overrides the image's working directory.
	WorkingDir string
	// ReadOnlyRootFS mounts the root filesystem read-only.
	ReadOnlyRootFS bool
	// Tmpfs lists paths to mount as fresh tmpfs.
	Tmpfs []string
	// RegistryAuth authenticates the image pull; nil means the node's
	// configured credentials or anonymous. Never persisted by drivers.
	RegistryAuth *RegistryAuth `json:"-"`
}

// RegistryAuth are registry credentials for one pull: a user name and
// password, or a docker config.json whose entry for the image's registry
// is used.
type RegistryAuth struct {
	Username, Password string
	DockerConfig       []byte
}

// Workload states as reported by Inspect and List.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
)

// Status describes one workload.
type Status struct {
	// ID is the driver's handle (a container ID for docker).
	ID string
	// InstanceID comes from the workload's berth.instance label.
	InstanceID string
	State      string
	ExitCode   int
	// Error is the runtime's own error text, if it recorded one.
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	Labels     map[string]string
	// IP is the workload's own address (its container network's, or its
	// node network attachment's); invalid when it has none (host network,
	// or a driver without a network of its own).
	IP netip.Addr
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow bool
	// Tail is how many lines from the end; 0 means all.
	Tail int
	// Timestamps prefixes each line with an RFC 3339 timestamp.
	Timestamps bool
}

// ExecResult is the outcome of Exec.
type ExecResult struct {
	ExitCode int
	// Output is combined stdout and stderr, truncated to a few KiB.
	Output string
}

// InsideDialer is an optional ability: connect to a port on the
// workload's own loopback, from inside its network. Health checks use it
// when a driver has it, instead of the published host port.
type InsideDialer interface {
	DialInside(ctx context.Context, id, network string, port int) (net.Conn, error)
}

// RuntimeLister is an optional ability of drivers that run several OCI
// runtimes: which are installed on this node ("runc", "crun", "runsc")
// and which one a task that names none gets. The agent advertises them on
// the node so the scheduler only places apps where their runtime exists.
type RuntimeLister interface {
	Runtimes() []string
	DefaultRuntime() string
}

// Driver runs workloads on one node. Methods are safe for concurrent use.
type Driver interface {
	// Name is how specs and nodes refer to the driver ("docker").
	Name() string
	// Available returns nil if the driver can run workloads on this node,
	// or an error saying why not.
	Available(ctx context.Context) error
	// Start creates and starts a workload for t, pulling its image if it is
	// missing, and returns its handle. A pull or start failure is returned
	// with the runtime's message; nothing is left behind on failure.
	Start(ctx context.Context, t Task) (string, error)
	// Restart starts an existing, exited workload again, keeping its ID.
	Restart(ctx context.Context, id string) error
	// Stop sends SIGTERM, waits up to grace, then kills. Stopping an exited
	// workload is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove deletes the workload; removing a missing one is not an error.
	Remove(ctx context.Context, id string) error
	// Inspect returns the workload's status or ErrNotFound.
	Inspect(ctx context.Context, id string) (Status, error)
	// List returns every workload this driver manages on the node (found
	// by LabelManaged), running or not.
	List(ctx context.Context) ([]Status, error)
	// Wait blocks until the workload is no longer running (or ctx ends)
	// and returns its status.
	Wait(ctx context.Context, id string) (Status, error)
	// Logs streams the workload's stdout and stderr as plain lines.
	Logs(ctx context.Context, id string, opts LogOptions) (io.ReadCloser, error)
	// Exec runs cmd inside the running workload and waits for it.
	Exec(ctx context.Context, id string, cmd []string) (ExecResult, error)
}

// WorkloadLabels are the labels of t's workload on node: the task's own,
// under berth's (Label* constants), which take precedence. node may be
// empty (a driver not scoped to a node).
func WorkloadLabels(t Task, node string) map[string]string {
	l := make(map[string]string, len(t.Labels)+6)
	for k, v := range t.Labels {
		l[k] = v
	}
	l[LabelManaged] = "true"
	l[LabelInstance] = t.InstanceID
	l[LabelApp] = t.App
	l[LabelNamespace] = t.Namespace
	l[LabelRevision] = strconv.FormatInt(t.Revision, 10)
	if node != "" {
		l[LabelNode] = node
	}
	return l
}
