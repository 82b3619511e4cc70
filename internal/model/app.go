// Package model holds berth's domain types, their validation and the store
// keys they live under. Types here are the wire types of the /v1 API too, so
// the Go client, the CLI and the server share one definition.
package model

import "time"

// DefaultNamespace is the namespace of objects that do not name one.
const DefaultNamespace = "default"

// AppSpec is what a user hands berth: an image plus how to run it. It is
// decoded strictly from YAML or JSON (see ParseSpec) and checked by Validate.
type AppSpec struct {
	// Name identifies the app inside its namespace (DNS label).
	Name string `json:"name"`
	// Namespace scopes the app; empty means DefaultNamespace.
	Namespace string `json:"namespace,omitempty"`
	// Image is the container image reference.
	Image string `json:"image"`
	// Command replaces the image's entrypoint when set.
	Command []string `json:"command,omitempty"`
	// Args replaces the image's default arguments when set.
	Args []string `json:"args,omitempty"`
	// Env is added to the container's environment.
	Env map[string]string `json:"env,omitempty"`
	// Instances is the desired count; nil means 1. Changing it alone does
	// not make a new revision.
	Instances *int `json:"instances,omitempty"`
	// Resources requested by each instance; the scheduler reserves them and
	// the driver enforces them as limits.
	Resources Resources `json:"resources,omitempty"`
	// Ports the app listens on; each gets a host port (fixed or assigned).
	Ports []PortSpec `json:"ports,omitempty"`
	// Health is the check that decides whether an instance is ready.
	Health *HealthCheck `json:"health,omitempty"`
	// Restart says what the agent does when an instance's process exits.
	Restart *RestartPolicy `json:"restart,omitempty"`
	// Labels are free-form metadata, also set on containers.
	Labels map[string]string `json:"labels,omitempty"`
	// Constraints restrict which nodes may run the app (see constraint.go
	// and docs/scheduler.md).
	Constraints []Constraint `json:"constraints,omitempty"`
	// Spread prefers nodes whose value of an attribute (e.g. zone) has the
	// fewest instances of the app.
	Spread *Spread `json:"spread,omitempty"`
	// Affinity places the app near (or away from) other apps.
	Affinity []Affinity `json:"affinity,omitempty"`
	// Type is service (default: keep Instances running), system (one
	// instance on every eligible node) or batch (run to completion).
	Type string `json:"type,omitempty"`
	// Completions is how many instances of a batch app must succeed
	// (default 1).
	Completions *int `json:"completions,omitempty"`
	// Parallelism is how many instances of a batch app run at once
	// (default 1).
	Parallelism *int `json:"parallelism,omitempty"`
	// BackoffLimit is how many failures a batch app tolerates before it is
	// failed (default 6).
	BackoffLimit *int `json:"backoffLimit,omitempty"`
	// Strategy is how the scheduler picks among fitting nodes: spread
	// (default: fewest instances of this app, then most free resources) or
	// binpack (least free resources).
	Strategy string `json:"strategy,omitempty"`
	// StopGracePeriod is how long a stop waits after SIGTERM before killing;
	// zero means DefaultStopGracePeriod.
	StopGracePeriod Duration `json:"stopGracePeriod,omitempty"`
	// Driver names the runtime driver: docker (default), oci (berth's own
	// image store and an OCI runtime) or process (a host command).
	Driver string `json:"driver,omitempty"`
	// Runtime picks the OCI runtime for driver oci: runc, crun or sandbox
	// (gVisor's runsc); empty means the node's default.
	Runtime string `json:"runtime,omitempty"`
	// User runs the process as "uid[:gid]" or a user name of the image.
	User string `json:"user,omitempty"`
	// WorkingDir overrides the image's working directory.
	WorkingDir string `json:"workingDir,omitempty"`
	// ReadOnlyRootFS mounts the root filesystem read-only.
	ReadOnlyRootFS bool `json:"readOnlyRootfs,omitempty"`
	// Tmpfs lists absolute paths that get a fresh tmpfs.
	Tmpfs []string `json:"tmpfs,omitempty"`
	// ImagePullSecret names a secret of the app's namespace with registry
	// credentials (username and password, or .dockerconfigjson) for
	// pulling Image.
	ImagePullSecret string `json:"imagePullSecret,omitempty"`
	// Bind gives the app other apps' DNS names and ports as environment
	// variables (<PREFIX>_HOST, _PORT, _ADDR; see bind.go, docs/dns.md).
	Bind []Binding `json:"bind,omitempty"`
	// Routes expose the app's ports through the edge router (see route.go).
	Routes []Route `json:"routes,omitempty"`
	// Rollout says how a new revision replaces the running one: rolling
	// (default), blueGreen or canary (see rollout.go, docs/releases.md).
	// Like Routes and Instances it is not part of the template.
	Rollout *RolloutSpec `json:"rollout,omitempty"`
	// Network is the isolation network of the app's instances (DNS label);
	// empty means the namespace's name. Traffic between networks is
	// dropped (see network.go, docs/network.md). Part of the template.
	Network string `json:"network,omitempty"`
	// AllowFrom lets other networks or apps reach this app's instances.
	// Policy only: not part of the template.
	AllowFrom []NetworkPeer `json:"allowFrom,omitempty"`
}

// Resources are per-instance requests.
type Resources struct {
	// CPU in cores (decimal, e.g. 0.25); stored in millicores.
	CPU MilliCPU `json:"cpu,omitempty"`
	// Memory in bytes, written with units such as 64Mi or 1G.
	Memory ByteSize `json:"memory,omitempty"`
	// GPUs is a count of whole GPU devices; the scheduler assigns device
	// indexes (Instance.GPUs) so no two instances share one.
	GPUs int `json:"gpus,omitempty"`
}

// PortSpec is one port the app listens on.
type PortSpec struct {
	// Name is referenced by health checks and routes (DNS label).
	Name string `json:"name"`
	// ContainerPort is the port inside the container.
	ContainerPort int `json:"containerPort"`
	// Protocol is tcp (default) or udp.
	Protocol string `json:"protocol,omitempty"`
	// HostPort pins the published port; zero lets the scheduler assign one.
	HostPort int `json:"hostPort,omitempty"`
}

// HealthCheck probes an instance; exactly one of HTTP, TCP and Exec is set.
type HealthCheck struct {
	HTTP *HTTPCheck `json:"http,omitempty"`
	TCP  *TCPCheck  `json:"tcp,omitempty"`
	Exec *ExecCheck `json:"exec,omitempty"`
	// Interval between probes (default 2s).
	Interval Duration `json:"interval,omitempty"`
	// Timeout of one probe (default 1s).
	Timeout Duration `json:"timeout,omitempty"`
	// Retries is how many consecutive failures make an instance unhealthy
	// (default 3).
	Retries int `json:"retries,omitempty"`
	// GracePeriod after start during which failures are not counted.
	GracePeriod Duration `json:"gracePeriod,omitempty"`
}

// HTTPCheck passes on a 2xx or 3xx answer to GET Path.
type HTTPCheck struct {
	// Port is the name of one of the app's ports.
	Port string `json:"port"`
	// Path defaults to "/".
	Path string `json:"path,omitempty"`
}

// TCPCheck passes when a TCP connection to Port opens.
type TCPCheck struct {
	Port string `json:"port"`
}

// ExecCheck passes when Command exits 0 inside the container.
type ExecCheck struct {
	Command []string `json:"command"`
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// RestartPolicy governs in-place restarts by the agent. Delays double from
// InitialDelay up to MaxDelay and reset once an instance has run for MaxDelay.
type RestartPolicy struct {
	// Policy is always (default), on-failure or never.
	Policy string `json:"policy,omitempty"`
	// InitialDelay before the first restart (default 1s).
	InitialDelay Duration `json:"initialDelay,omitempty"`
	// MaxDelay caps the backoff (default 1m).
	MaxDelay Duration `json:"maxDelay,omitempty"`
}

// Placement strategies.
const (
	StrategySpread  = "spread"
	StrategyBinpack = "binpack"
)

// Defaults applied by Normalize.
const (
	DefaultStopGracePeriod = 10 * time.Second
	DefaultHealthInterval  = 2 * time.Second
	DefaultHealthTimeout   = time.Second
	DefaultHealthRetries   = 3
	DefaultRestartInitial  = time.Second
	DefaultRestartMax      = time.Minute
	DefaultDriver          = "docker"
	DefaultProtocol        = "tcp"
	DefaultHTTPHealthPath  = "/"
	DefaultInstances       = 1
	MaxInstancesPerApp     = 10000
)

// App is the stored desired state of an app: its current spec (the template
// of revision Revision) and the desired instance count.
type App struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Spec is the normalized spec of the current revision, with Instances
	// holding the current desired count.
	Spec AppSpec `json:"spec"`
	// Revision is the number of the current revision (1, 2, ...).
	Revision int64 `json:"revision"`
	// LatestRevision is the highest revision number made so far; after a
	// rollback Revision is lower. New revisions are numbered from it.
	LatestRevision int64 `json:"latestRevision,omitempty"`
	// Deleting is set by `rm`; the controller stops every instance and then
	// removes the app and its revisions.
	Deleting  bool      `json:"deleting,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// DesiredInstances is the count the deployment controller converges to.
func (a *App) DesiredInstances() int {
	if a.Spec.Instances == nil {
		return DefaultInstances
	}
	return *a.Spec.Instances
}

// Revision is an immutable snapshot of an app's template. Every accepted
// change other than the instance count makes a new one.
type Revision struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Number    int64  `json:"number"`
	// Spec is the normalized spec with Instances cleared.
	Spec AppSpec `json:"spec"`
	// Hash is TemplateHash(Spec); equal hashes mean an identical template.
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
}

// AppStatus summarizes an app's instances for `berth apps` and `--wait`.
type AppStatus struct {
	Desired  int   `json:"desired"`
	Running  int   `json:"running"`
	Healthy  int   `json:"healthy"`
	Ready    int   `json:"ready"`
	Pending  int   `json:"pending"`
	Failed   int   `json:"failed"`
	Stopping int   `json:"stopping"`
	Revision int64 `json:"revision"`
	// Outdated counts active instances of older revisions.
	Outdated int `json:"outdated"`
	// Converged is true when exactly Desired instances of Revision are
	// ready and nothing else is active.
	Converged bool `json:"converged"`
	// Failing is true when an instance of the current revision has failed
	// FailingThreshold times in a row: waiting longer will not help.
	Failing bool `json:"failing,omitempty"`
	// Message explains why the app is not converged (scheduler refusal,
	// driver error), when known.
	Message string `json:"message,omitempty"`
	// Job is the progress of a batch app (see BatchProgress).
	Job *JobStatus `json:"job,omitempty"`
}

// FailingThreshold is how many consecutive failures of one instance make
// its app "failing".
const FailingThreshold = 3

// AppView is an app with its status, as returned by the API.
type AppView struct {
	App
	Status AppStatus `json:"status"`
}

// ApplyResult is the answer to an apply.
type ApplyResult struct {
	App App `json:"app"`
	// Changed is false when the spec was identical to the current one.
	Changed bool `json:"changed"`
	// NewRevision is true when the template changed.
	NewRevision bool `json:"newRevision"`
}
