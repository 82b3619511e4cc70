package model

import "time"

// Heartbeats: an agent beats every BaseHeartbeat, slower in large
// clusters so the control plane answers at most MaxHeartbeatsPerSecond
// beats (as Nomad scales its heartbeat TTL). The server tells agents the
// interval in a response header and stretches the node controller's
// timeouts by the same factor.
const (
	BaseHeartbeat          = 2 * time.Second
	MaxHeartbeatsPerSecond = 1000
	// HeaderHeartbeatInterval carries HeartbeatInterval (a Go duration)
	// on the API's answers to agents.
	HeaderHeartbeatInterval = "Berth-Heartbeat-Interval"
)

// HeartbeatInterval is how often each of nodes agents beats:
// BaseHeartbeat up to 2,000 nodes, then nodes/MaxHeartbeatsPerSecond.
func HeartbeatInterval(nodes int) time.Duration {
	return max(BaseHeartbeat, time.Duration(nodes)*time.Second/MaxHeartbeatsPerSecond)
}

// HeartbeatStretch is the factor (≥ 1) by which the node liveness
// timeouts grow with a cluster of nodes: HeartbeatInterval over
// BaseHeartbeat.
func HeartbeatStretch(nodes int) float64 {
	return float64(HeartbeatInterval(nodes)) / float64(BaseHeartbeat)
}
