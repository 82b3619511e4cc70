// Package nodes is the control loop of node liveness. It owns Node.Status
// transitions to unreachable and down, and back from down to ready:
//
//	ready ──(no heartbeat for UnreachableAfter)──▶ unreachable
//	unreachable ──(no heartbeat for Grace)──▶ down   (instances replaced)
//	unreachable ──(heartbeat)──▶ ready               (by the agent)
//	down ──(heartbeats steady for RecoverAfter)──▶ ready
//
// The last step is the hysteresis that keeps a flapping node from being
// handed work and losing it again. Heartbeats are judged by
// Node.LastHeartbeat, which the server stamps with its own clock when an
// agent writes its node over the API, so clock skew between hosts does
// not matter; heartbeats that change nothing else stay in server memory
// (Liveness). Above 2,000 nodes agents beat less often
// (model.HeartbeatInterval) and both timeouts stretch by the same factor.
package nodes

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
)

// Defaults, tuned so a lost node's instances run elsewhere within about
// 15s with the agent's default heartbeat (agent.DefaultHeartbeat, 2s).
const (
	// DefaultUnreachableAfter: no new placements once heartbeats stop
	// this long.
	DefaultUnreachableAfter = 5 * time.Second
	// DefaultGrace: a node silent this long is down and its instances
	// are replaced.
	DefaultGrace = 10 * time.Second
	// DefaultRecoverAfter: a down node must heartbeat steadily this long
	// before it is ready again.
	DefaultRecoverAfter = 15 * time.Second
)

// Options are the controller's dependencies.
type Options struct {
	Store store.Store
	// State is the server's shared view of nodes (a private one when
	// nil).
	State  *state.State
	Events *events.Recorder
	Log    *slog.Logger
	// Grace before a silent node is marked down (default DefaultGrace).
	Grace time.Duration
	// UnreachableAfter before a silent node is marked unreachable
	// (default DefaultUnreachableAfter, at most Grace/2).
	UnreachableAfter time.Duration
	// RecoverAfter of steady heartbeats before a down node is ready
	// again (default DefaultRecoverAfter).
	RecoverAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Liveness holds heartbeats the API kept in memory only (nil: every
	// heartbeat is in the node object).
	Liveness *Liveness
}

// Controller is the node lifecycle loop.
type Controller struct {
	o       Options
	started time.Time

	mu sync.Mutex
	// recovering: down nodes heartbeating again, since when.
	recovering map[string]time.Time
}

// New makes the controller.
func New(o Options) *Controller {
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.UnreachableAfter == 0 {
		o.UnreachableAfter = min(DefaultUnreachableAfter, o.Grace/2)
	}
	if o.RecoverAfter == 0 {
		o.RecoverAfter = DefaultRecoverAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.State = state.Or(o.State, o.Store, o.Log)
	return &Controller{o: o, recovering: map[string]time.Time{}}
}

// Run checks heartbeats until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.started = c.o.Now()
	resync := min(c.o.UnreachableAfter, c.o.Grace) / 4
	loop.Run(ctx, loop.Options{Name: "nodes", Store: c.o.Store, Log: c.o.Log, Resync: max(resync, 100*time.Millisecond),
		Prefixes: []string{model.PrefixNodes}}, c.Reconcile)
}

// Reconcile moves nodes through the states above. For one grace period
// after the controller starts nothing is marked unreachable or down:
// heartbeats stored before a control-plane restart are stale through no
// fault of the nodes.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	now := c.o.Now()
	list, err := c.o.State.Nodes.Values(ctx)
	if err != nil {
		return false, err
	}
	lim := c.limits(len(list))
	startup := now.Sub(c.started) < lim.grace
	for _, shared := range list {
		n := *shared
		stored := n.LastHeartbeat
		n.LastHeartbeat = c.o.Liveness.Last(n.Name, stored)
		age := now.Sub(n.LastHeartbeat)
		next, reason, msg := c.next(n, age, now, startup, lim)
		if next == "" {
			continue
		}
		_, err := store.Update(ctx, c.o.Store, model.NodeKey(n.Name), func(cur *model.Node) error {
			// Changed meanwhile, or (going down) a heartbeat arrived: the
			// next pass decides. A beat never holds back a recovery.
			if cur.Status != n.Status || !cur.LastHeartbeat.Equal(stored) ||
				next != model.NodeReady && c.o.Liveness.Last(n.Name, cur.LastHeartbeat).After(n.LastHeartbeat) {
				return store.ErrSkip
			}
			cur.Status = next
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return true, err
		}
		typ := model.EventWarning
		if next == model.NodeReady {
			typ = model.EventNormal
		}
		c.o.Events.Record(ctx, model.Event{Type: typ, Reason: reason, Node: n.Name, Message: msg})
	}
	return false, nil
}

// limits are the silences after which a node is unreachable or down.
type limits struct{ unreachable, grace time.Duration }

// limits stretches the configured timeouts as agents of a cluster of
// nodes beat less often (model.HeartbeatInterval).
func (c *Controller) limits(nodes int) limits {
	f := model.HeartbeatStretch(nodes)
	return limits{unreachable: time.Duration(float64(c.o.UnreachableAfter) * f), grace: time.Duration(float64(c.o.Grace) * f)}
}

// next returns the node's next status, or "" to leave it.
func (c *Controller) next(n model.Node, age time.Duration, now time.Time, startup bool, lim limits) (status, reason, msg string) {
	silent := "no heartbeat since " + n.LastHeartbeat.Format(time.RFC3339)
	if n.Status == model.NodeDown {
		c.mu.Lock()
		defer c.mu.Unlock()
		if age >= lim.unreachable {
			delete(c.recovering, n.Name)
			return "", "", ""
		}
		since, ok := c.recovering[n.Name]
		if !ok {
			c.recovering[n.Name] = now
			return "", "", ""
		}
		if now.Sub(since) < c.o.RecoverAfter {
			return "", "", ""
		}
		delete(c.recovering, n.Name)
		return model.NodeReady, "NodeReady", "heartbeats steady for " + c.o.RecoverAfter.String() + "; node is ready again"
	}
	switch {
	case startup:
	case age >= lim.grace:
		return model.NodeDown, "NodeDown", silent
	case age >= lim.unreachable && n.Status == model.NodeReady:
		return model.NodeUnreachable, "NodeUnreachable", silent
	}
	return "", "", ""
}
