package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network/overlay"
	"github.com/berth-dev/berth/internal/store"
)

// DefaultSubnetWait bounds how long an agent waits for the server to
// allocate its node subnet before it falls back to --bridge-subnet.
const DefaultSubnetWait = 2 * time.Minute

// nodeNet is the agent side of the cluster network (docs/network.md):
// it waits for the node's subnet, starts the node bridge on its native
// half, brings up the VXLAN overlay, publishes the node's VTEP and keeps
// the routes to every other node's subnet in sync with the node list.
type nodeNet struct {
	st      store.Store
	node    string
	address string
	nat     *native
	opts    NativeOptions
	log     *slog.Logger
}

// run works until ctx ends. Drivers wait on nat.lazy meanwhile.
func (n *nodeNet) run(ctx context.Context) {
	nodes := make(chan map[string]model.Node, 1)
	go watchNodes(ctx, n.st, n.log, func(m map[string]model.Node) {
		select { // keep only the latest view
		case <-nodes:
		default:
		}
		nodes <- m
	})
	cur, subnet, ok := n.waitSubnet(ctx, nodes)
	if !ok {
		return
	}
	native, gw, err := model.NativeSubnet(subnet)
	if err != nil {
		n.nat.lazy.fail(err)
		n.log.Error("node network not started: bad subnet from the server", "err", err)
		return
	}
	var ov *overlay.Overlay
	mtu := 0
	if local, err := netip.ParseAddr(n.address); err != nil {
		n.log.Warn("overlay not started: node address is not an IP; instances are reachable from this node only", "address", n.address)
	} else if ov, err = overlay.Up(overlay.Options{Local: local, Subnet: netip.MustParsePrefix(subnet), Port: n.opts.OverlayPort}); err != nil {
		n.log.Warn("overlay not started; instances are reachable from this node only", "err", err)
		ov = nil
	} else {
		mtu = ov.MTU()
	}
	if err := n.nat.startNetwork(native, mtu); err != nil {
		n.log.Warn("node network unavailable: oci and process instances get no address and cannot publish ports", "err", err)
		return
	}
	n.log.Info("node network up", "subnet", subnet, "bridge", native, "gateway", gw, "mtu", mtu, "overlay", ov != nil)
	if ov != nil {
		n.syncLoop(ctx, ov, subnet, cur, nodes)
	}
}

// waitSubnet waits, bounded by opts.SubnetWait, for this node's subnet.
// Past the bound it starts the node network on opts.Subnet without the
// overlay and returns ok=false.
func (n *nodeNet) waitSubnet(ctx context.Context, nodes <-chan map[string]model.Node) (map[string]model.Node, string, bool) {
	wait := n.opts.SubnetWait
	if wait <= 0 {
		wait = DefaultSubnetWait
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	start := time.Now()
	logged := false
	for {
		select {
		case <-ctx.Done():
			n.nat.lazy.fail(ctx.Err())
			return nil, "", false
		case cur := <-nodes:
			if s := cur[n.node].Subnet; s != "" {
				return cur, s, true
			}
			if !logged {
				n.log.Info("waiting for the server to allocate this node's subnet; oci and process instances wait too", "node", n.node, "upTo", wait)
				logged = true
			}
		case <-tick.C:
			n.log.Info("still waiting for this node's subnet from the server", "node", n.node, "waited", time.Since(start).Round(time.Second))
		case <-deadline.C:
			subnet := n.opts.Subnet
			n.log.Warn("no subnet from the server: the node network uses --bridge-subnet without the overlay (is the server's --cluster-cidr exhausted?); restart the agent once it has one",
				"node", n.node, "waited", wait)
			if err := n.nat.startNetwork(subnet, 0); err != nil {
				n.log.Warn("node network unavailable: oci and process instances get no address and cannot publish ports", "err", err)
			}
			return nil, "", false
		}
	}
}

// syncLoop publishes the VTEP and programs peers on every change of the
// node list, and every 10s (repairs routes removed by hand, retries
// failed writes).
func (n *nodeNet) syncLoop(ctx context.Context, ov *overlay.Overlay, subnet string, cur map[string]model.Node, nodes <-chan map[string]model.Node) {
	vtep := ov.VTEP()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	lastErr, lastPeers, warnedSubnet := "", "", false
	force := true
	portWarned := map[string]bool{}
	for {
		self, registered := cur[n.node]
		if registered && (self.VTEP == nil || *self.VTEP != vtep) {
			_, err := store.Update(ctx, n.st, model.NodeKey(n.node), func(nd *model.Node) error {
				if nd.VTEP != nil && *nd.VTEP == vtep {
					return store.ErrSkip
				}
				nd.VTEP = &vtep
				return nil
			})
			if err != nil && ctx.Err() == nil {
				n.log.Warn("could not publish this node's VTEP; retrying", "err", err)
			}
		}
		if registered && self.Subnet != "" && self.Subnet != subnet && !warnedSubnet {
			n.log.Warn("the server gave this node another subnet; restart the agent to use it", "using", subnet, "allocated", self.Subnet)
			warnedSubnet = true
		}
		for name, nd := range cur {
			if nd.VTEP != nil && nd.VTEP.Port != 0 && nd.VTEP.Port != vtep.Port && !portWarned[name] {
				n.log.Warn("peer node uses another VXLAN port; its instances are unreachable from here (use the same --vxlan-port on every node)",
					"peer", name, "peerPort", nd.VTEP.Port, "port", vtep.Port)
				portWarned[name] = true
			}
		}
		peers := peersOf(cur, n.node)
		// Program the kernel when the peers changed, or on the tick.
		if key := fmt.Sprint(peers); force || key != lastPeers {
			msg := ""
			if err := ov.Sync(peers); err != nil {
				msg = err.Error()
			}
			if msg != lastErr && msg != "" {
				n.log.Warn("overlay sync", "err", msg)
			}
			lastErr, lastPeers = msg, key
		}
		force = false
		select {
		case <-ctx.Done():
			return
		case cur = <-nodes:
		case <-tick.C:
			force = true
		}
	}
}

// peersOf returns the overlay peers among nodes: every node but self
// with a subnet, an IPv4 address and a VTEP, whatever its status (an
// unreachable peer keeps its routes).
func peersOf(nodes map[string]model.Node, self string) []overlay.Peer {
	var out []overlay.Peer
	for name, nd := range nodes {
		if name == self || nd.Subnet == "" || nd.VTEP == nil {
			continue
		}
		s, err1 := netip.ParsePrefix(nd.Subnet)
		a, err2 := netip.ParseAddr(nd.Address)
		mac, err3 := net.ParseMAC(nd.VTEP.MAC)
		if err1 != nil || err2 != nil || err3 != nil || !a.Is4() {
			continue
		}
		out = append(out, overlay.Peer{Name: name, Subnet: s, Address: a, MAC: mac})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// watchNodes calls f with every node, by name, after the first listing
// and after every batch of changes to a node's subnet, address or VTEP
// (or a node added or removed), until ctx ends. A failed watch is
// listed again (at most once a second).
func watchNodes(ctx context.Context, st store.Store, log *slog.Logger, f func(map[string]model.Node)) {
	for ctx.Err() == nil {
		objs, rev, err := store.ListJSON[model.Node](ctx, st, model.PrefixNodes)
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("list nodes", "err", err)
			}
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		m := map[string]model.Node{}
		for _, o := range objs {
			m[o.Value.Name] = o.Value
		}
		f(copyNodes(m))
		ch, err := st.Watch(ctx, model.PrefixNodes, rev)
		if err != nil {
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		dirty := false
		for ev := range ch {
			name := strings.TrimPrefix(ev.KV.Key, model.PrefixNodes)
			old, had := m[name]
			if ev.Type == store.EventDelete {
				delete(m, name)
				dirty = dirty || had
			} else {
				var nd model.Node
				if json.Unmarshal(ev.KV.Value, &nd) != nil {
					continue
				}
				m[name] = nd
				dirty = dirty || !had || !sameNetwork(old, nd)
			}
			if dirty && len(ch) == 0 { // end of a burst that changed something
				f(copyNodes(m))
				dirty = false
			}
		}
		ctxsleep.Sleep(ctx, time.Second)
	}
}

// sameNetwork reports whether a and b agree on what the node network
// uses (heartbeats change nothing of it).
func sameNetwork(a, b model.Node) bool {
	return a.Subnet == b.Subnet && a.Address == b.Address &&
		(a.VTEP == nil) == (b.VTEP == nil) && (a.VTEP == nil || *a.VTEP == *b.VTEP)
}

func copyNodes(m map[string]model.Node) map[string]model.Node {
	out := make(map[string]model.Node, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
