package subnets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/controller/loop"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
)

// Options configure the controller.
type Options struct {
	Store store.Store
	// State is the server's shared view of nodes (a private one when
	// nil).
	State *state.State
	Pool  Pool
	Log   *slog.Logger
	// Resync is the longest time between passes (default 5s).
	Resync time.Duration
	// Keep names nodes whose allocation is kept even while their node
	// object does not exist (berth up's own node, reserved before its
	// agent registers).
	Keep []string
}

// Controller allocates node subnets.
type Controller struct {
	o Options
	// starved are nodes already reported as left without a subnet.
	mu      sync.Mutex
	starved map[string]bool
}

// New makes the controller.
func New(o Options) *Controller {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.State = state.Or(o.State, o.Store, o.Log)
	return &Controller{o: o, starved: map[string]bool{}}
}

// Run reconciles on every change of nodes or allocations until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	loop.Run(ctx, loop.Options{Name: "subnets", Store: c.o.Store, Log: c.o.Log, Resync: c.o.Resync,
		Prefixes: []string{model.PrefixNodes, model.PrefixSubnets}}, c.Reconcile)
}

// allocation is one /subnets key.
type allocation struct {
	subnet netip.Prefix
	node   string
	modRev int64
}

// Reconcile gives every node without an allocation the first free subnet,
// sets Node.Subnet to the node's allocation and releases allocations of
// nodes that no longer exist. Every write is a compare-and-swap Txn, so
// concurrent passes (or servers) never hand one subnet to two nodes.
func (c *Controller) Reconcile(ctx context.Context) (bool, error) {
	// Nodes first: an allocation is only made together with its node's
	// write, so allocations listed after the nodes include every one the
	// listed nodes carry, and a node written in between fails the
	// compare below. (The other order let a second controller see a
	// node's subnet without its allocation and give it another.)
	nodes, err := c.o.State.Nodes.List(ctx)
	if err != nil {
		return false, err
	}
	allocs, err := c.allocations(ctx)
	if err != nil {
		return false, err
	}
	byNode := map[string]allocation{}
	var used []netip.Prefix
	for _, a := range allocs {
		used = append(used, a.subnet)
		if prev, ok := byNode[a.node]; !ok || a.modRev < prev.modRev {
			byNode[a.node] = a // two for one node (should not happen): keep the older
		}
	}
	exists := map[string]bool{}
	free := c.o.Pool.Allocator(used)
	var writes []nodeWrite
	for _, n := range nodes {
		exists[n.Value.Name] = true
		a, ok := byNode[n.Value.Name]
		var t store.Txn
		if ok {
			if n.Value.Subnet == a.subnet.String() {
				continue
			}
			t.Compares = []store.Compare{{Key: model.SubnetKey(a.subnet.String()), ModRev: a.modRev}}
		} else {
			s, err := free.Next()
			if err != nil {
				c.mu.Lock()
				if !c.starved[n.Value.Name] {
					c.o.Log.Error("no subnet for node", "node", n.Value.Name, "err", err)
					c.starved[n.Value.Name] = true
				}
				c.mu.Unlock()
				continue
			}
			a = allocation{subnet: s, node: n.Value.Name}
			t.Compares = []store.Compare{{Key: model.SubnetKey(s.String()), ModRev: 0}}
			t.Ops = []store.Op{store.Put(model.SubnetKey(s.String()), []byte(n.Value.Name))}
		}
		node := n.Value
		node.Subnet = a.subnet.String()
		b, err := json.Marshal(node)
		if err != nil {
			return false, err
		}
		t.Compares = append(t.Compares, store.Compare{Key: model.NodeKey(node.Name), ModRev: n.ModRev})
		t.Ops = append(t.Ops, store.Put(model.NodeKey(node.Name), b))
		writes = append(writes, nodeWrite{txn: t, node: node.Name, subnet: a.subnet})
	}
	again, err := c.writeNodes(ctx, writes)
	if err != nil {
		return false, err
	}
	for _, k := range c.o.Keep {
		exists[k] = true
	}
	for _, a := range allocs {
		var node store.Compare
		switch {
		case !exists[a.node]:
			// Released only while the node is still absent (it may register again).
			node = store.Compare{Key: model.NodeKey(a.node), ModRev: 0}
		case byNode[a.node].subnet != a.subnet:
			// A second allocation of one node (left by an older server
			// that raced): the older one is kept, this one freed.
			node = store.Compare{Key: model.SubnetKey(byNode[a.node].subnet.String()), ModRev: byNode[a.node].modRev}
		default:
			continue
		}
		err := c.txn(ctx, store.Txn{
			Compares: []store.Compare{{Key: model.SubnetKey(a.subnet.String()), ModRev: a.modRev}, node},
			Ops:      []store.Op{store.Delete(model.SubnetKey(a.subnet.String()))}})
		switch {
		case errors.Is(err, store.ErrConflict):
			again = true
		case err != nil:
			return false, err
		default:
			c.o.Log.Info("node subnet released", "node", a.node, "subnet", a.subnet)
		}
	}
	return again, nil
}

// nodeWrite is one node's allocation, or its Node.Subnet catching up
// with it: a compare-and-swap Txn of the node (and the allocation).
type nodeWrite struct {
	txn    store.Txn
	node   string
	subnet netip.Prefix
}

// parallelWrites is how many node writes a pass has in flight: the
// store commits the queued ones together, so a fleet joining at once
// gets its subnets in a few commits instead of one fsync per node.
const parallelWrites = 64

// writeNodes commits writes, parallelWrites at a time; again reports a
// conflict (a node changed since the listing: the next pass retries).
func (c *Controller) writeNodes(ctx context.Context, writes []nodeWrite) (again bool, err error) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelWrites)
	for _, w := range writes {
		g.Go(func() error {
			err := c.txn(gctx, w.txn)
			switch {
			case errors.Is(err, store.ErrConflict):
				mu.Lock()
				again = true
				mu.Unlock()
				return nil
			case err != nil:
				return err
			}
			if len(w.txn.Ops) == 2 {
				c.o.Log.Info("node subnet allocated", "node", w.node, "subnet", w.subnet)
			}
			return nil
		})
	}
	return again, g.Wait()
}

func (c *Controller) txn(ctx context.Context, t store.Txn) error {
	_, err := c.o.Store.Txn(ctx, t)
	return err
}

// allocations lists the /subnets keys, oldest first.
func (c *Controller) allocations(ctx context.Context) ([]allocation, error) {
	kvs, _, err := c.o.Store.List(ctx, model.PrefixSubnets)
	if err != nil {
		return nil, err
	}
	var out []allocation
	for _, kv := range kvs {
		cidr := strings.Replace(strings.TrimPrefix(kv.Key, model.PrefixSubnets), "-", "/", 1)
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			c.o.Log.Warn("ignoring malformed subnet allocation", "key", kv.Key)
			continue
		}
		out = append(out, allocation{subnet: p, node: string(kv.Value), modRev: kv.ModRev})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].modRev < out[j].modRev })
	return out, nil
}

// Reserve returns node's allocated subnet, allocating the first free one
// of pool if it has none, without touching the node object (the
// controller sets Node.Subnet once the node registers). berth up calls
// it before its node network starts.
func Reserve(ctx context.Context, st store.Store, pool Pool, node string) (netip.Prefix, error) {
	c := New(Options{Store: st, Pool: pool})
	for range 10 {
		allocs, err := c.allocations(ctx)
		if err != nil {
			return netip.Prefix{}, err
		}
		var used []netip.Prefix
		for _, a := range allocs {
			if a.node == node {
				return a.subnet, nil
			}
			used = append(used, a.subnet)
		}
		s, err := pool.Next(used)
		if err != nil {
			return netip.Prefix{}, err
		}
		err = c.txn(ctx, store.Txn{Compares: []store.Compare{{Key: model.SubnetKey(s.String()), ModRev: 0}},
			Ops: []store.Op{store.Put(model.SubnetKey(s.String()), []byte(node))}})
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return netip.Prefix{}, err
		}
	}
	return netip.Prefix{}, fmt.Errorf("reserve a subnet for node %s: too many conflicting allocations", node)
}
