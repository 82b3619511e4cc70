package docker

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/berth-dev/berth/internal/model"
)

// DefaultNetworkName is the berth-managed Docker network's default name.
const DefaultNetworkName = "berth"

// LabelNetworkManaged marks the Docker networks berth manages.
const LabelNetworkManaged = "berth.managed"

// Network is the berth-managed Docker bridge network the driver attaches
// containers to: the docker half of the node's subnet (docs/network.md).
type Network struct {
	// Name of the Docker network (default DefaultNetworkName).
	Name string
	// Subnet and Gateway are the network's IPAM (IPv4).
	Subnet  netip.Prefix
	Gateway netip.Addr
	// DNS are the name servers of containers on the network (node DNS on
	// its gateway); empty: the Options' DNS.
	DNS []netip.Addr
	// Labels are added to the network's (berth.managed=1 always is).
	Labels map[string]string
}

// NetworkFor is the network of node subnet nodeSubnet: its docker half
// and that half's gateway (model.DockerSubnet), named name.
func NetworkFor(name, nodeSubnet string) (*Network, error) {
	if name != "" && !validNetworkName(name) {
		return nil, fmt.Errorf("docker network name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	p, gw, err := model.DockerSubnet(nodeSubnet)
	if err != nil {
		return nil, err
	}
	return &Network{Name: name, Subnet: p, Gateway: gw}, nil
}

// validNetworkName is Docker's rule for network names.
func validNetworkName(s string) bool {
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

func (n *Network) name() string {
	if n.Name == "" {
		return DefaultNetworkName
	}
	return n.Name
}

// network is the network containers are attached to, nil for Docker's
// default bridge (or while NetworkFrom has not answered).
func (d *Driver) network() *Network {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	return d.net
}

// ensureNetwork returns the network containers are attached to (nil:
// Docker's default bridge), asking NetworkFrom first if needed, and
// creates it unless it exists with the wanted subnet and gateway. One
// that berth manages with another subnet is recreated when no container
// uses it; anything else is a clear error. netMu is never held while
// NetworkFrom blocks or the engine is called, so Inspect and List go on.
func (d *Driver) ensureNetwork(ctx context.Context) (*Network, error) {
	d.createMu.Lock()
	defer d.createMu.Unlock()
	d.netMu.Lock()
	from, n, ready := d.netFrom, d.net, d.netReady
	d.netMu.Unlock()
	if from != nil {
		var err error
		if n, err = from(ctx); err != nil {
			return nil, err
		}
	}
	if n != nil && !ready {
		if err := d.createNetwork(ctx, n); err != nil {
			return nil, err
		}
	}
	d.netMu.Lock()
	d.net, d.netFrom, d.netReady = n, nil, true
	d.netMu.Unlock()
	return n, nil
}

// createNetwork makes n exist as wanted (see ensureNetwork).
func (d *Driver) createNetwork(ctx context.Context, n *Network) error {
	name := n.name()
	cur, err := d.c.NetworkInspect(ctx, name, network.InspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("docker network %s: %s", name, engineMessage(err))
	case cur.Labels[LabelNetworkManaged] != "1":
		return fmt.Errorf("docker network %s exists and is not berth's (no label %s=1); remove it or give berth another network name",
			name, LabelNetworkManaged)
	case sameIPAM(cur, n):
		return nil
	case len(cur.Containers) > 0:
		return fmt.Errorf("docker network %s has subnet %s, the node's docker subnet is %s, and containers still use it (%s); stop them so berth can recreate it",
			name, ipamString(cur), n.Subnet, containerNames(cur))
	default:
		if err := d.c.NetworkRemove(ctx, cur.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("docker network %s: remove it to change its subnet to %s: %s", name, n.Subnet, engineMessage(err))
		}
	}
	labels := map[string]string{LabelNetworkManaged: "1"}
	for k, v := range n.Labels {
		labels[k] = v
	}
	_, err = d.c.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels,
		IPAM: &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: n.Subnet.String(), Gateway: n.Gateway.String()}}}})
	if err != nil {
		if other := d.overlapping(ctx, n); other != "" {
			return fmt.Errorf("docker network %s (subnet %s) conflicts with docker network %s; remove it or give this node another subnet: %s",
				name, n.Subnet, other, engineMessage(err))
		}
		return fmt.Errorf("create docker network %s (subnet %s): %s", name, n.Subnet, engineMessage(err))
	}
	return nil
}

// networkGone forgets that the network exists (it was removed under the
// driver); the next start recreates it.
func (d *Driver) networkGone() {
	d.netMu.Lock()
	d.netReady = false
	d.netMu.Unlock()
}

// sameIPAM reports whether cur has exactly n's subnet and gateway.
func sameIPAM(cur network.Inspect, n *Network) bool {
	if cur.Driver != "bridge" || len(cur.IPAM.Config) != 1 {
		return false
	}
	c := cur.IPAM.Config[0]
	return c.Subnet == n.Subnet.String() && c.Gateway == n.Gateway.String()
}

func ipamString(cur network.Inspect) string {
	var s []string
	for _, c := range cur.IPAM.Config {
		s = append(s, c.Subnet)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ",")
}

func containerNames(cur network.Inspect) string {
	var s []string
	for _, c := range cur.Containers {
		s = append(s, c.Name)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// overlapping is the name of another Docker network whose subnet
// overlaps n's, or "".
func (d *Driver) overlapping(ctx context.Context, n *Network) string {
	nets, err := d.c.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return ""
	}
	for _, o := range nets {
		for _, c := range o.IPAM.Config {
			if q, err := netip.ParsePrefix(c.Subnet); err == nil && q.Overlaps(n.Subnet) && o.Name != n.name() {
				return o.Name
			}
		}
	}
	return ""
}
