// Package placement is the control loop that puts pending instances on
// nodes. It snapshots the store, asks the pure scheduler for a plan and
// commits it in one transaction guarded by optimistic concurrency: every
// placed instance's ModRev and every target node's placement key must be
// unchanged since the snapshot, so a stale plan can never overcommit a
// node. It owns Instance.Node, Instance.HostPorts, Instance.GPUs and
// PlacementMessage.
package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/scheduler"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/sync/errgroup"
)

// Options are the controller's dependencies.
type Options struct {
	Store store.Store
	// State is the server's shared view of nodes and instances (a
	// private one when nil).
	State  *state.State
	Events *events.Recorder
	Log    *slog.Logger
}

// Controller is the placement loop.
type Controller struct{ o Options }

// New makes the controller.
func New(o Options) *Controller {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.State = state.Or(o.State, o.Store, o.Log)
	return &Controller{o: o}
}

// Run places instances until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	loop.Run(ctx, loop.Options{Name: "placement", Store: c.o.Store, Log: c.o.Log,
		Prefixes: []string{model.PrefixInstances, model.PrefixNodes}}, c.Reconcile)
}

// Reconcile runs one scheduling pass; again is true after a lost race.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	// Most passes (status writes, heartbeats) find nothing to place: they
	// end here, without reading the placement keys of every node.
	if objs, err := c.o.State.Instances.List(ctx); err != nil || !slices.ContainsFunc(objs, unplaced) {
		return false, err
	}
	// Read placement keys before instances: a plan committed after this
	// read bumps a key we compare against, so we cannot miss it.
	pkeys, _, err := c.o.Store.List(ctx, model.PrefixPlacements)
	if err != nil {
		return false, err
	}
	placeRev := map[string]store.KV{}
	for _, kv := range pkeys {
		placeRev[strings.TrimPrefix(kv.Key, model.PrefixPlacements)] = kv
	}
	// The view syncs to the store's revision at each read, later than
	// the placement keys' listing.
	nodes, err := c.o.State.Nodes.Values(ctx)
	if err != nil {
		return false, err
	}
	objs, err := c.o.State.Instances.List(ctx)
	if err != nil {
		return false, err
	}
	snap := scheduler.Snapshot{NodeRefs: nodes, InstanceRefs: make([]*model.Instance, 0, len(objs))}
	var pending []*store.Object[model.Instance]
	for _, o := range objs {
		snap.InstanceRefs = append(snap.InstanceRefs, &o.Value)
		if unplaced(o) {
			pending = append(pending, o)
		}
	}
	if len(pending) == 0 {
		return false, nil
	}
	sort.SliceStable(pending, func(i, j int) bool {
		return pending[i].Value.CreatedAt.Before(pending[j].Value.CreatedAt)
	})
	specs := map[string]*model.AppSpec{}
	var asks []scheduler.Ask
	byID := map[string]*store.Object[model.Instance]{}
	for _, o := range pending {
		spec, err := c.spec(ctx, specs, &o.Value)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue // app or revision removed; deployment loop cleans up
			}
			return false, err
		}
		byID[o.Value.ID] = o
		asks = append(asks, scheduler.AskFor(spec, &o.Value))
	}
	plan := scheduler.Schedule(snap, asks)
	if err := c.commit(ctx, plan, byID, placeRev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return true, nil
		}
		return false, err
	}
	for _, f := range plan.Failures {
		c.refuse(ctx, byID[f.InstanceID], f.Reason)
	}
	return false, nil
}

// unplaced reports whether o waits for a node.
func unplaced(o *store.Object[model.Instance]) bool {
	return o.Value.Active() && o.Value.Node == ""
}

// spec returns the template of the instance's revision, cached per pass.
func (c *Controller) spec(ctx context.Context, cache map[string]*model.AppSpec, in *model.Instance) (*model.AppSpec, error) {
	key := model.RevisionKey(in.Namespace, in.App, in.Revision)
	if s, ok := cache[key]; ok {
		return s, nil
	}
	o, err := store.GetJSON[model.Revision](ctx, c.o.Store, key)
	if err != nil {
		return nil, err
	}
	cache[key] = &o.Value.Spec
	return &o.Value.Spec, nil
}

// commitBatch bounds the placements committed in one Txn (with their
// events), so a plan of 100,000 instances is not one giant transaction.
const commitBatch = 2000

// commitWorkers bounds the batches of one plan in flight at once.
const commitWorkers = 8

// commit stores the plan in Txns of about commitBatch placements, each
// holding whole nodes: a node's placements and its placement key are in
// one batch only. So batches do not depend on each other, each is
// guarded on its own (its instances' ModRevs and its nodes' placement
// keys as the pass read them) and they are written side by side, sharing
// the store's commits. A batch refused because someone else placed on
// its nodes leaves the others committed; the next pass plans the rest.
func (c *Controller) commit(ctx context.Context, plan scheduler.Plan, byID map[string]*store.Object[model.Instance], placeRev map[string]store.KV) error {
	batches := batchByNode(plan.Placements, commitBatch)
	errs := make([]error, len(batches))
	var g errgroup.Group
	g.SetLimit(commitWorkers)
	for i, b := range batches {
		g.Go(func() error {
			errs[i] = c.commitBatch(ctx, b, byID, placeRev)
			return nil
		})
	}
	_ = g.Wait() // each batch's outcome is in errs
	var conflict error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, store.ErrConflict):
			conflict = err
		default:
			return err
		}
	}
	return conflict
}

// batchByNode cuts ps into batches of whole nodes' placements, closing a
// batch once it holds size or more; placements keep their order within a
// node.
func batchByNode(ps []scheduler.Placement, size int) [][]scheduler.Placement {
	var order []string
	byNode := map[string][]scheduler.Placement{}
	for _, p := range ps {
		if _, ok := byNode[p.Node]; !ok {
			order = append(order, p.Node)
		}
		byNode[p.Node] = append(byNode[p.Node], p)
	}
	var out [][]scheduler.Placement
	var cur []scheduler.Placement
	for _, n := range order {
		cur = append(cur, byNode[n]...)
		if len(cur) >= size {
			out = append(out, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (c *Controller) commitBatch(ctx context.Context, ps []scheduler.Placement, byID map[string]*store.Object[model.Instance], placeRev map[string]store.KV) error {
	var t store.Txn
	bumped := map[string]bool{}
	for _, p := range ps {
		o := byID[p.InstanceID]
		in := o.Value
		in.Node, in.HostPorts, in.GPUs, in.PlacementMessage = p.Node, p.HostPorts, p.GPUs, ""
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		t.Compares = append(t.Compares, store.Compare{Key: in.Key(), ModRev: o.ModRev})
		t.Ops = append(t.Ops, store.Put(in.Key(), b))
		// One Scheduled event per placement, in the same Txn: one sync
		// for the batch and its explanations.
		if op, ok := c.o.Events.InstanceOp(&in, "Scheduled", "placed on node %s%s%s", in.Node, hostPortsSuffix(in.HostPorts), gpusSuffix(in.GPUs)); ok {
			t.Ops = append(t.Ops, op)
		}
		if !bumped[p.Node] {
			bumped[p.Node] = true
			kv := placeRev[p.Node]
			n, _ := strconv.ParseInt(string(kv.Value), 10, 64)
			next := []byte(strconv.FormatInt(n+1, 10))
			t.Compares = append(t.Compares, store.Compare{Key: model.PlacementKey(p.Node), ModRev: kv.ModRev})
			t.Ops = append(t.Ops, store.Put(model.PlacementKey(p.Node), next))
		}
	}
	_, err := c.o.Store.Txn(ctx, t)
	return err
}

func hostPortsSuffix(ports map[string]int) string {
	if len(ports) == 0 {
		return ""
	}
	return " with host ports " + model.FormatHostPorts(ports)
}

func gpusSuffix(gpus []int) string {
	if len(gpus) == 0 {
		return ""
	}
	return fmt.Sprintf(" with gpus %v", gpus)
}

// refuse records why an instance could not be placed, once per distinct
// reason.
func (c *Controller) refuse(ctx context.Context, o *store.Object[model.Instance], reason string) {
	if o == nil || o.Value.PlacementMessage == reason {
		return
	}
	in, err := store.Update(ctx, c.o.Store, o.Value.Key(), func(in *model.Instance) error {
		if in.Node != "" || in.PlacementMessage == reason {
			return store.ErrSkip
		}
		in.PlacementMessage = reason
		return nil
	})
	if err == nil {
		c.o.Events.Warning(ctx, &in, "FailedScheduling", "%s", reason)
	}
}
