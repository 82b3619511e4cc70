// Package drain is the control loop behind `berth node drain`: it moves
// the instances of a draining node elsewhere one at a time. It stops one
// instance (Desired=stop, which the deployment controller honours by
// creating a replacement; the node is cordoned, so the replacement lands
// elsewhere) and stops the next one only when every app with instances on
// the node is whole again: as many active instances as it desires, all
// ready (healthy when it has a health check). Instances of system and
// batch apps are stopped at once. When nothing runs on the node any more
// it clears Node.Draining (the node stays cordoned).
//
// It writes only Instance.Desired of instances on draining nodes and
// Node.Draining; it is stateless, so a server restart mid-drain resumes.
package drain

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
)

// Options are the loop's dependencies.
type Options struct {
	Store store.Store
	// State is the server's shared view of nodes and instances (a
	// private one when nil).
	State  *state.State
	Events *events.Recorder
	Log    *slog.Logger
	// Resync is the longest time between passes (default 2s).
	Resync time.Duration
}

// Controller drains nodes.
type Controller struct{ o Options }

// New makes the controller.
func New(o Options) *Controller {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Resync == 0 {
		o.Resync = 2 * time.Second
	}
	o.State = state.Or(o.State, o.Store, o.Log)
	return &Controller{o: o}
}

// Run drains until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	loop.Run(ctx, loop.Options{Name: "drain", Store: c.o.Store, Log: c.o.Log, Resync: c.o.Resync,
		Prefixes: []string{model.PrefixNodes, model.PrefixInstances}}, c.Reconcile)
}

// Reconcile makes one step of progress on every draining node.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	nodes, err := c.o.State.Nodes.Values(ctx)
	if err != nil {
		return false, err
	}
	var draining []string
	for _, n := range nodes {
		if n.Draining {
			draining = append(draining, n.Name)
		}
	}
	if len(draining) == 0 {
		return false, nil
	}
	insts, err := c.o.State.Instances.Values(ctx) // shared: read only
	if err != nil {
		return false, err
	}
	apps, err := store.ListValues[model.App](ctx, c.o.Store, model.PrefixApps)
	if err != nil {
		return false, err
	}
	appOf := map[string]*model.App{}
	for i := range apps {
		appOf[apps[i].Namespace+"/"+apps[i].Name] = &apps[i]
	}
	sort.Slice(insts, func(i, j int) bool { return insts[i].ID < insts[j].ID })
	for _, node := range draining {
		if err := c.step(ctx, node, insts, appOf); err != nil {
			return true, err
		}
	}
	return false, nil
}

// step stops what may be stopped now on node, or finishes the drain.
func (c *Controller) step(ctx context.Context, node string, insts []*model.Instance, appOf map[string]*model.App) error {
	var onNode []*model.Instance
	stopping := false
	for _, in := range insts {
		if in.Node != node {
			continue
		}
		if in.Active() {
			onNode = append(onNode, in)
		} else if !in.Terminal() && in.Status.State != "" && in.Status.State != model.StatePending {
			stopping = true
		}
	}
	if len(onNode) == 0 {
		if stopping {
			return nil
		}
		_, err := store.Update(ctx, c.o.Store, model.NodeKey(node), func(n *model.Node) error {
			if !n.Draining {
				return store.ErrSkip
			}
			n.Draining = false
			return nil
		})
		if err == nil {
			c.o.Events.Record(ctx, model.Event{Type: model.EventNormal, Reason: "NodeDrained", Node: node,
				Message: "no instance is left on the node; it stays cordoned (berth node uncordon " + node + ")"})
		}
		return ignoreNotFound(err)
	}
	// System and batch instances go at once.
	for _, in := range onNode {
		if app := appOf[in.Namespace+"/"+in.App]; app == nil || app.Spec.IsSystem() || app.Spec.IsBatch() {
			if err := c.stop(ctx, in, node); err != nil {
				return err
			}
		}
	}
	if stopping {
		return nil // one service instance at a time
	}
	for _, in := range onNode {
		app := appOf[in.Namespace+"/"+in.App]
		if app == nil || app.Spec.IsSystem() || app.Spec.IsBatch() || app.Deleting {
			continue
		}
		if !whole(app, insts) {
			continue
		}
		return c.stop(ctx, in, node)
	}
	return nil
}

// whole reports whether app has at least its desired count of active
// instances, all ready.
func whole(app *model.App, insts []*model.Instance) bool {
	hasHealth := app.Spec.Health != nil
	active := 0
	for _, in := range insts {
		if in.Namespace != app.Namespace || in.App != app.Name || !in.Active() {
			continue
		}
		if !in.Ready(hasHealth) {
			return false
		}
		active++
	}
	return active >= app.DesiredInstances()
}

func (c *Controller) stop(ctx context.Context, in *model.Instance, node string) error {
	_, err := store.Update(ctx, c.o.Store, in.Key(), func(cur *model.Instance) error {
		if cur.Node != node || !cur.Active() {
			return store.ErrSkip
		}
		cur.Desired = model.DesiredStop
		return nil
	})
	if err != nil {
		return ignoreNotFound(err)
	}
	c.o.Events.Normal(ctx, in, "Draining", "node %s is draining; stopping the instance so it is replaced elsewhere", node)
	return nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
