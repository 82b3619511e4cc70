package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Instance states, in the order an instance normally moves through them.
const (
	StatePending  = "pending"  // stored, not yet placed or not yet started
	StateStarting = "starting" // driver is pulling/creating/starting
	StateRunning  = "running"  // process is up
	StateStopping = "stopping" // graceful stop in progress
	StateStopped  = "stopped"  // stopped on purpose or exited 0 with no restart
	StateFailed   = "failed"   // exited non-zero or could not start
	StateLost     = "lost"     // its node is gone; the controller replaces it
)

// Health values.
const (
	HealthNone      = ""          // the app has no health check
	HealthUnknown   = "unknown"   // not probed yet or in grace period
	HealthHealthy   = "healthy"   // last probe passed
	HealthUnhealthy = "unhealthy" // Retries consecutive probes failed
)

// Desired states written by controllers.
const (
	DesiredRun  = "run"
	DesiredStop = "stop"
)

// Instance is one copy of an app at one revision. Controllers own every field
// but Status; the agent of Node owns Status.
type Instance struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Revision  int64  `json:"revision"`
	// Node is empty until the scheduler places the instance.
	Node string `json:"node,omitempty"`
	// Desired is run or stop.
	Desired string `json:"desired"`
	// Resources reserved on Node.
	Resources Resources `json:"resources"`
	// HostPorts maps port name to the host port reserved on Node.
	HostPorts map[string]int `json:"hostPorts,omitempty"`
	// GPUs are the device indexes reserved on Node (Resources.GPUs of
	// them); the driver exposes only these devices.
	GPUs []int `json:"gpus,omitempty"`
	// TargetNode pins the instance to one node (system apps); the
	// scheduler considers no other.
	TargetNode string `json:"targetNode,omitempty"`
	// Outcome is set by the deployment controller when an instance of a
	// batch app finished: succeeded, failed or stopped. It keeps the record so the
	// job's progress survives the workload's removal.
	Outcome string `json:"outcome,omitempty"`
	// PlacementMessage says why the scheduler could not place it.
	PlacementMessage string         `json:"placementMessage,omitempty"`
	Status           InstanceStatus `json:"status"`
	CreatedAt        time.Time      `json:"createdAt"`
}

// InstanceStatus is reported by the agent running the instance.
type InstanceStatus struct {
	State  string `json:"state"`
	Health string `json:"health,omitempty"`
	// ContainerID is the driver's handle of the workload.
	ContainerID string `json:"containerId,omitempty"`
	// IP is the workload's own address on its node's network (the docker
	// network's, or the CNI attachment's); unset for workloads on the
	// host's network. Node DNS serves it.
	IP netip.Addr `json:"ip,omitzero"`
	// Message is the last driver or health message worth showing.
	Message  string `json:"message,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
	// Restarts counts in-place restarts by the agent.
	Restarts int `json:"restarts,omitempty"`
	// Failures counts consecutive failed starts and exits; it resets once
	// the instance has run stably (see agent).
	Failures int `json:"failures,omitempty"`
	// NextRestartAt is set while waiting out a restart backoff.
	NextRestartAt *time.Time `json:"nextRestartAt,omitempty"`
	StartedAt     *time.Time `json:"startedAt,omitempty"`
	UpdatedAt     time.Time  `json:"updatedAt"`
}

// Batch outcomes (Instance.Outcome).
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	// OutcomeStopped is an instance stopped because its job ended (complete
	// or failed) while it ran; it counts as neither.
	OutcomeStopped = "stopped"
)

// Active reports whether the instance is meant to run.
func (i *Instance) Active() bool { return i.Desired == DesiredRun }

// Ready reports whether the instance runs and, when the app has a health
// check, passes it.
func (i *Instance) Ready(hasHealthCheck bool) bool {
	if i.Status.State != StateRunning {
		return false
	}
	return !hasHealthCheck || i.Status.Health == HealthHealthy
}

// Terminal reports whether the instance will not run again by itself.
func (i *Instance) Terminal() bool {
	switch i.Status.State {
	case StateStopped, StateLost:
		return true
	case StateFailed:
		return i.Status.NextRestartAt == nil
	}
	return false
}

// FormatHostPorts writes host ports as "admin:20001,http:20000", sorted by
// port name; "" when there are none.
func FormatHostPorts(ports map[string]int) string {
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s:%d", n, ports[n])
	}
	return strings.Join(parts, ",")
}
