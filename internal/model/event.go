package model

import "time"

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event records something that happened to an app, instance or node, for
// `berth events` and for explaining why an app is not converged.
type Event struct {
	// Seq orders events; assigned by the store.
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	Namespace string    `json:"namespace,omitempty"`
	App       string    `json:"app,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	Node      string    `json:"node,omitempty"`
}
