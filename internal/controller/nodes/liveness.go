package nodes

import (
	"sync"
	"time"
)

// Liveness holds the server's latest heartbeat per node in memory. A
// heartbeat that changes nothing else about a node is recorded here only,
// not written to the store: at thousands of nodes, durable heartbeats
// would be thousands of fsynced writes per second, each waking every
// watcher of /nodes/. The store's Node.LastHeartbeat is then the time of
// the node's last durable write; Last returns the later of the two.
// After a server restart the table is empty and the controller's startup
// grace gives agents time to beat again. A nil *Liveness records nothing.
type Liveness struct {
	mu   sync.RWMutex
	last map[string]time.Time
}

// NewLiveness makes an empty table.
func NewLiveness() *Liveness { return &Liveness{last: map[string]time.Time{}} }

// Beat records a heartbeat of node at t (the server's clock).
func (l *Liveness) Beat(node string, t time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if t.After(l.last[node]) {
		l.last[node] = t
	}
	l.mu.Unlock()
}

// Last returns the later of stored (the node object's LastHeartbeat) and
// the node's last heartbeat in memory.
func (l *Liveness) Last(node string, stored time.Time) time.Time {
	if l == nil {
		return stored
	}
	l.mu.RLock()
	t, ok := l.last[node]
	l.mu.RUnlock()
	if ok && t.After(stored) {
		return t
	}
	return stored
}
