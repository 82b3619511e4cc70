// Package nodes is the control loop that marks nodes down when their
// heartbeats stop. It owns Node.Status transitions to down; agents set
// their node ready on every heartbeat.
package nodes

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// DefaultGrace is how long a node may miss heartbeats before it is down.
const DefaultGrace = 30 * time.Second

// Options are the controller's dependencies.
type Options struct {
	Store  store.Store
	Events *events.Recorder
	Log    *slog.Logger
	// Grace before a silent node is marked down (default DefaultGrace).
	Grace time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller is the node lifecycle loop.
type Controller struct {
	o       Options
	started time.Time
}

// New makes the controller.
func New(o Options) *Controller {
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Controller{o: o}
}

// Run checks heartbeats until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.started = c.o.Now()
	loop.Run(ctx, loop.Options{Name: "nodes", Store: c.o.Store, Log: c.o.Log, Resync: c.o.Grace / 4,
		Prefixes: []string{model.PrefixNodes}}, c.Reconcile)
}

// Reconcile marks silent nodes down. For one grace period after the
// controller starts nothing is marked down: heartbeats stored before a
// control-plane restart are stale through no fault of the nodes.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	now := c.o.Now()
	if now.Sub(c.started) < c.o.Grace {
		return false, nil
	}
	list, err := store.ListValues[model.Node](ctx, c.o.Store, model.PrefixNodes)
	if err != nil {
		return false, err
	}
	for _, n := range list {
		if n.Status == model.NodeDown || now.Sub(n.LastHeartbeat) < c.o.Grace {
			continue
		}
		_, err := store.Update(ctx, c.o.Store, model.NodeKey(n.Name), func(n *model.Node) error {
			if n.Status == model.NodeDown || now.Sub(n.LastHeartbeat) < c.o.Grace {
				return store.ErrSkip
			}
			n.Status = model.NodeDown
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return true, err
		}
		c.o.Events.Record(ctx, model.Event{Type: model.EventWarning, Reason: "NodeDown", Node: n.Name,
			Message: "no heartbeat since " + n.LastHeartbeat.Format(time.RFC3339)})
	}
	return false, nil
}
