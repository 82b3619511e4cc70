// Package deployment is the control loop that makes each app's instances
// match its spec: count, revision (rollouts: rolling, blue/green, canary,
// with automatic rollback), node loss and deletion, for the three app
// types: service, system (one instance per eligible node) and batch (run
// to completion). It owns creating, stopping and removing instance
// objects and the rollout objects; it consumes rollout requests. Plan is
// its pure core.
package deployment

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sync/errgroup"
)

// Options are the controller's dependencies.
type Options struct {
	Store store.Store
	// State is the server's shared view of instances and nodes (a
	// private one when nil).
	State  *state.State
	Events *events.Recorder
	Log    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Resync is the longest time between passes (default 1s: rollout
	// pauses and deadlines are timed).
	Resync time.Duration
	// Metrics, when set, gives canary analysis the router's figures by
	// revision; without it the analysis is health only.
	Metrics Metrics
}

// Metrics reports what one revision of an app served over a window (the
// edge router implements it).
type Metrics interface {
	RevisionStats(ns, app string, rev int64, window time.Duration) model.RevisionStats
}

// Controller is the deployment control loop.
type Controller struct {
	o Options
}

// New makes the controller.
func New(o Options) *Controller {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.State = state.Or(o.State, o.Store, o.Log)
	return &Controller{o: o}
}

// Run reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	resync := c.o.Resync
	if resync == 0 {
		resync = time.Second
	}
	loop.Run(ctx, loop.Options{Name: "deployment", Store: c.o.Store, Log: c.o.Log, Resync: resync,
		Prefixes: []string{model.PrefixApps, model.PrefixInstances, model.PrefixNodes, model.PrefixRolloutRequests}}, c.Reconcile)
}

// Reconcile makes one pass over every app. It returns again=true when a
// write lost a race and another pass should follow.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	appObjs, _, err := store.ListJSON[model.App](ctx, c.o.Store, model.PrefixApps)
	if err != nil {
		return false, err
	}
	instObjs, err := c.o.State.Instances.List(ctx)
	if err != nil {
		return false, err
	}
	nodeList, err := c.o.State.Nodes.Values(ctx)
	if err != nil {
		return false, err
	}
	nodes := make(map[string]*model.Node, len(nodeList))
	for _, n := range nodeList {
		nodes[n.Name] = n // shared: read only
	}
	rollouts, requests, err := c.rolloutObjects(ctx)
	if err != nil {
		return false, err
	}
	byApp := map[string][]*store.Object[model.Instance]{}
	for _, o := range instObjs {
		k := o.Value.Namespace + "/" + o.Value.App
		byApp[k] = append(byApp[k], o)
	}
	states := make([]*appState, 0, len(appObjs)+len(byApp))
	for _, ao := range appObjs {
		k := ao.Value.Namespace + "/" + ao.Value.Name
		states = append(states, &appState{c: c, app: ao, insts: byApp[k], rollout: rollouts[k], request: requests[k]})
		delete(byApp, k)
	}
	// Instances whose app is gone (e.g. removed while they were stopping).
	for _, objs := range byApp {
		states = append(states, &appState{c: c, app: store.Object[model.App]{Value: model.App{Deleting: true}}, insts: objs})
	}
	return reconcileAll(ctx, states, nodes)
}

// appWorkers bounds how many apps one pass reconciles at once. Apps are
// independent (each write is guarded by its own compares), and their
// Txns, in flight together, share the store's commits: after a burst of
// applies, a pass writes 100 apps' instances in about 13 commits, not
// 100. More at once made each commit larger and a user's apply waited
// longer behind it (1,000 apps from 8 clients: 57s with 32, 36-48s with
// 1 to 8).
const appWorkers = 8

// reconcileAll reconciles every app, appWorkers at a time. again is true
// when a write lost a race; err is the first other failure.
func reconcileAll(ctx context.Context, states []*appState, nodes map[string]*model.Node) (again bool, err error) {
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(appWorkers)
	for _, a := range states {
		g.Go(func() error {
			e := a.reconcile(ctx, nodes)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case e == nil:
			case errors.Is(e, store.ErrConflict):
				again = true
			case err == nil:
				again, err = true, e
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through again and err
	return again, err
}

type appState struct {
	c       *Controller
	app     store.Object[model.App]
	insts   []*store.Object[model.Instance] // shared with the state view: read only
	rollout *store.Object[model.Rollout]
	request *store.Object[model.RolloutRequest]
}

// find returns a private copy of instance id, for the caller to change
// and write.
func (a *appState) find(id string) *store.Object[model.Instance] {
	for _, o := range a.insts {
		if o.Value.ID == id {
			c := *o
			return &c
		}
	}
	return nil
}

func (a *appState) reconcile(ctx context.Context, nodes map[string]*model.Node) error {
	refs := make([]*model.Instance, len(a.insts))
	for i, o := range a.insts {
		refs[i] = &o.Value
	}
	app := &a.app.Value
	in := Input{App: app, Instances: refs, Nodes: nodes, Now: a.c.o.Now()}
	if a.rollout != nil {
		in.Rollout = &a.rollout.Value
	}
	if a.request != nil {
		in.Request = &a.request.Value
	}
	in.Stats = a.stats()
	d := Plan(in)
	if d.Revert != nil {
		return a.revert(ctx, d)
	}
	for _, id := range d.Delete {
		if err := a.remove(ctx, a.find(id)); err != nil {
			return err
		}
	}
	for _, id := range d.Lost {
		o := a.find(id)
		o.Value.Desired = model.DesiredStop
		o.Value.Status.State = model.StateLost
		o.Value.Status.Message = "node " + o.Value.Node + " is down"
		o.Value.Status.UpdatedAt = a.c.o.Now()
		if err := a.put(ctx, o); err != nil {
			return err
		}
		a.c.o.Events.Warning(ctx, &o.Value, "Lost", "node %s is down; replacing the instance", o.Value.Node)
	}
	for _, s := range d.Stop {
		o := a.find(s.ID)
		o.Value.Desired = model.DesiredStop
		if err := a.put(ctx, o); err != nil {
			return err
		}
		a.c.o.Events.Normal(ctx, &o.Value, "Stopping", "stopping instance: %s", s.Reason)
	}
	for _, f := range d.Finish {
		o := a.find(f.ID)
		o.Value.Desired, o.Value.Outcome = model.DesiredStop, f.Outcome
		if err := a.put(ctx, o); err != nil {
			return err
		}
		switch f.Outcome {
		case model.OutcomeSucceeded:
			a.c.o.Events.Normal(ctx, &o.Value, "Succeeded", "instance succeeded: %s", f.Reason)
		case model.OutcomeFailed:
			a.c.o.Events.Warning(ctx, &o.Value, "Failed", "instance failed: %s", f.Reason)
		default:
			a.c.o.Events.Normal(ctx, &o.Value, "Stopping", "stopping instance: %s", f.Reason)
		}
	}
	if d.Job != nil {
		typ := model.EventNormal
		if d.Job.Reason == "JobFailed" {
			typ = model.EventWarning
		}
		a.c.o.Events.Record(ctx, model.Event{Type: typ, Reason: d.Job.Reason, Namespace: app.Namespace, App: app.Name, Message: d.Job.Message})
	}
	var news []created
	for i := 0; i < d.Create; i++ {
		news = append(news, a.created(""))
	}
	if d.CreateStable > 0 {
		stable, err := a.stableCreated(ctx, d.StableRevision, d.CreateStable)
		if err != nil {
			return err
		}
		news = append(news, stable...)
	}
	for _, node := range d.CreateOn {
		news = append(news, a.created(node))
	}
	if err := a.create(ctx, news); err != nil {
		return err
	}
	if d.DeleteApp && a.app.ModRev != 0 {
		return a.deleteApp(ctx)
	}
	return a.saveRollout(ctx, d)
}

func (a *appState) put(ctx context.Context, o *store.Object[model.Instance]) error {
	rev, err := store.PutJSON(ctx, a.c.o.Store, o.Value.Key(), o.Value, o.ModRev)
	o.ModRev = rev
	return err
}

func (a *appState) remove(ctx context.Context, o *store.Object[model.Instance]) error {
	_, err := a.c.o.Store.Txn(ctx, store.Txn{
		Compares: []store.Compare{{Key: o.Value.Key(), ModRev: o.ModRev}},
		Ops:      []store.Op{store.Delete(o.Value.Key())}})
	return err
}

// created is an instance to create and the message of its Created event.
type created struct {
	in  model.Instance
	msg string
}

// createBatch bounds the instances created in one Txn.
const createBatch = 500

// newInstance is a pending instance of revision rev of the app.
func (a *appState) newInstance(rev int64, res model.Resources, target string) model.Instance {
	app := &a.app.Value
	now := a.c.o.Now()
	return model.Instance{ID: newInstanceID(app.Name), Namespace: app.Namespace, App: app.Name,
		Revision: rev, Desired: model.DesiredRun, Resources: res, TargetNode: target,
		Status: model.InstanceStatus{State: model.StatePending, UpdatedAt: now}, CreatedAt: now}
}

// created is a new instance of the current revision, pinned to target
// when it is set (system apps).
func (a *appState) created(target string) created {
	app := &a.app.Value
	c := created{in: a.newInstance(app.Revision, app.Spec.Resources, target)}
	c.msg = fmt.Sprintf("instance created for revision %d", app.Revision)
	if target != "" {
		c.msg += " on node " + target
	}
	return c
}

// create stores the instances with their Created events, up to
// createBatch of each in one Txn: one sync for the batch, where one Txn
// per instance and per event made app creation fsync-bound.
func (a *appState) create(ctx context.Context, news []created) error {
	for len(news) > 0 {
		n := min(len(news), createBatch)
		var t store.Txn
		for i := range news[:n] {
			in := &news[i].in
			b, err := json.Marshal(in)
			if err != nil {
				return err
			}
			t.Compares = append(t.Compares, store.Compare{Key: in.Key()})
			t.Ops = append(t.Ops, store.Put(in.Key(), b))
			if op, ok := a.c.o.Events.InstanceOp(in, "Created", "%s", news[i].msg); ok {
				t.Ops = append(t.Ops, op)
			}
		}
		if _, err := a.c.o.Store.Txn(ctx, t); err != nil {
			return err
		}
		news = news[n:]
	}
	return nil
}

func (a *appState) deleteApp(ctx context.Context) error {
	app := &a.app.Value
	ops := []store.Op{store.Delete(model.AppKey(app.Namespace, app.Name)),
		store.Delete(model.RolloutKey(app.Namespace, app.Name)), store.Delete(model.RolloutRequestKey(app.Namespace, app.Name))}
	revs, _, err := a.c.o.Store.List(ctx, model.RevisionPrefix(app.Namespace, app.Name))
	if err != nil {
		return err
	}
	for _, kv := range revs {
		ops = append(ops, store.Delete(kv.Key))
	}
	_, err = a.c.o.Store.Txn(ctx, store.Txn{
		Compares: []store.Compare{{Key: model.AppKey(app.Namespace, app.Name), ModRev: a.app.ModRev}}, Ops: ops})
	if err == nil {
		a.c.o.Events.Record(ctx, model.Event{Reason: "Deleted", Namespace: app.Namespace, App: app.Name,
			Message: fmt.Sprintf("app %s removed with its %d revisions", app.Name, len(revs))})
	}
	return err
}

func newInstanceID(app string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return app + "-" + hex.EncodeToString(b[:])
}
