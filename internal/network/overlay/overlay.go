//go:build linux

// Package overlay connects node subnets across hosts with VXLAN, the way
// flannel's vxlan backend does: one VXLAN device per node (learning off),
// and for every peer node a route to its subnet via <subnet>.0 onlink on
// the device, a permanent ARP entry <subnet>.0 → the peer's VTEP MAC and
// an FDB entry that MAC → the peer's underlay address. Everything is
// programmed from the node list, idempotently (see Sync).
package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/internal/model"
)

// DefaultDevice is the VXLAN device's name.
const DefaultDevice = "berth-vx0"

// Options configure the node's VXLAN device.
type Options struct {
	// Device is the VXLAN device name (default DefaultDevice).
	Device string
	// VNI and Port default to model.OverlayVNI and model.OverlayPort.
	VNI, Port int
	// Local is the node's underlay address (Node.Address); VXLAN packets
	// leave from it.
	Local netip.Addr
	// Subnet is this node's subnet (Node.Subnet); the device holds its
	// first address as a /32, flannel-style, so the host itself has a
	// source address on the overlay.
	Subnet netip.Prefix
	// MTU of the device; 0: the MTU of the interface holding Local minus
	// model.OverlayHeader.
	MTU int
}

// Peer is another node as the overlay needs it.
type Peer struct {
	Name    string
	Subnet  netip.Prefix
	Address netip.Addr
	MAC     net.HardwareAddr
}

// Overlay is the node's VXLAN device and its peers' routes.
type Overlay struct {
	o    Options
	mu   sync.Mutex
	link netlink.Link
}

// Up creates (or adopts, or recreates when its parameters changed) the
// VXLAN device, gives it the subnet's first address, brings it up and
// installs the iptables rules that keep source addresses between node
// subnets and let that traffic be forwarded.
func Up(o Options) (*Overlay, error) {
	if o.Device == "" {
		o.Device = DefaultDevice
	}
	if o.VNI == 0 {
		o.VNI = model.OverlayVNI
	}
	if o.Port == 0 {
		o.Port = model.OverlayPort
	}
	if !o.Local.Is4() {
		return nil, fmt.Errorf("overlay: node address %q is not an IPv4 address", o.Local)
	}
	if !o.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("overlay: node subnet %q is not IPv4", o.Subnet)
	}
	parent, underMTU, err := interfaceOf(o.Local)
	if err != nil {
		return nil, err
	}
	if o.MTU == 0 {
		o.MTU = underMTU - model.OverlayHeader
	}
	want := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: o.Device, MTU: o.MTU}, VxlanId: o.VNI,
		VtepDevIndex: parent.Attrs().Index, SrcAddr: net.IP(o.Local.AsSlice()), Port: o.Port, Learning: false}
	link, err := netlink.LinkByName(o.Device)
	if err == nil {
		if cur, ok := link.(*netlink.Vxlan); !ok || !sameVxlan(cur, want) {
			if err := netlink.LinkDel(link); err != nil {
				return nil, fmt.Errorf("overlay: replace %s: %w", o.Device, err)
			}
			link = nil
		}
	} else {
		link = nil
	}
	if link == nil {
		if err := netlink.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("overlay: create VXLAN device %s (vni %d, port %d): %w", o.Device, o.VNI, o.Port, err)
		}
		if link, err = netlink.LinkByName(o.Device); err != nil {
			return nil, fmt.Errorf("overlay: %s: %w", o.Device, err)
		}
	}
	if link.Attrs().MTU != o.MTU {
		if err := netlink.LinkSetMTU(link, o.MTU); err != nil {
			return nil, fmt.Errorf("overlay: set MTU %d on %s: %w", o.MTU, o.Device, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(o.Subnet.Addr().AsSlice()), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return nil, fmt.Errorf("overlay: address %s on %s: %w", addr.IPNet, o.Device, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("overlay: bring %s up: %w", o.Device, err)
	}
	if err := ensureRules(o.Device); err != nil {
		return nil, err
	}
	return &Overlay{o: o, link: link}, nil
}

// sameVxlan reports whether an existing device matches what Up wants.
func sameVxlan(cur, want *netlink.Vxlan) bool {
	return cur.VxlanId == want.VxlanId && cur.Port == want.Port && cur.SrcAddr.Equal(want.SrcAddr) &&
		cur.VtepDevIndex == want.VtepDevIndex && !cur.Learning
}

// interfaceOf returns the interface holding addr and its MTU.
func interfaceOf(addr netip.Addr) (netlink.Link, int, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, 0, fmt.Errorf("overlay: interface of %s: %w", addr, err)
			}
			return l, l.Attrs().MTU, nil
		}
	}
	return nil, 0, fmt.Errorf("overlay: no interface holds the node address %s (set --address to one of this host's addresses)", addr)
}

// MAC is the VXLAN device's hardware address, which peers put in their
// ARP and FDB entries (model.VTEP.MAC).
func (v *Overlay) MAC() net.HardwareAddr { return v.link.Attrs().HardwareAddr }

// VTEP describes the device for the node object.
func (v *Overlay) VTEP() model.VTEP {
	return model.VTEP{MAC: v.MAC().String(), VNI: v.o.VNI, Port: v.o.Port, MTU: v.o.MTU}
}

// MTU is the device's MTU; the node's bridge must not exceed it.
func (v *Overlay) MTU() int { return v.o.MTU }

// Sync makes the device's routes, ARP and FDB entries exactly those of
// peers: missing entries are added, changed ones (a peer's new address
// or MAC) replaced, entries of nodes no longer listed removed. A peer
// that is merely unreachable stays listed, so its routes stay.
func (v *Overlay) Sync(peers []Peer) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	idx := v.link.Attrs().Index
	routes, macs, gws := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var errs []error
	for _, p := range peers {
		if !p.Subnet.Addr().Is4() || !p.Address.Is4() || len(p.MAC) != 6 || p.Subnet.Overlaps(v.o.Subnet) {
			errs = append(errs, fmt.Errorf("overlay: peer %s: unusable subnet %s, address %s or MAC %s", p.Name, p.Subnet, p.Address, p.MAC))
			continue
		}
		gw := net.IP(p.Subnet.Masked().Addr().AsSlice())
		dst := &net.IPNet{IP: gw, Mask: net.CIDRMask(p.Subnet.Bits(), 32)}
		routes[dst.String()], macs[p.MAC.String()], gws[gw.String()] = true, true, true
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: gw, HardwareAddr: p.MAC}); err != nil {
			errs = append(errs, fmt.Errorf("overlay: ARP entry of %s: %w", p.Name, err))
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: syscall.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: net.IP(p.Address.AsSlice()), HardwareAddr: p.MAC}); err != nil {
			errs = append(errs, fmt.Errorf("overlay: FDB entry of %s: %w", p.Name, err))
		}
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: dst, Gw: gw, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
			errs = append(errs, fmt.Errorf("overlay: route to %s (%s): %w", p.Subnet, p.Name, err))
		}
	}
	errs = append(errs, v.prune(idx, routes, macs, gws))
	return errors.Join(errs...)
}

// prune removes the device's routes, ARP and FDB entries not wanted.
func (v *Overlay) prune(idx int, routes, macs, gws map[string]bool) error {
	var errs []error
	rs, err := netlink.RouteList(v.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("overlay: list routes: %w", err)
	}
	for _, r := range rs {
		if r.Dst != nil && r.Gw != nil && !routes[r.Dst.String()] {
			if err := netlink.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("overlay: remove route to %s: %w", r.Dst, err))
			}
		}
	}
	ns, err := netlink.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("overlay: list ARP entries: %w", err)
	}
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT != 0 && !gws[n.IP.String()] {
			if err := netlink.NeighDel(&n); err != nil {
				errs = append(errs, fmt.Errorf("overlay: remove ARP entry %s: %w", n.IP, err))
			}
		}
	}
	fdb, err := netlink.NeighList(idx, syscall.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("overlay: list FDB entries: %w", err)
	}
	for _, n := range fdb {
		if n.IP != nil && !n.IP.IsUnspecified() && !macs[n.HardwareAddr.String()] {
			if err := netlink.NeighDel(&n); err != nil {
				errs = append(errs, fmt.Errorf("overlay: remove FDB entry %s: %w", n.HardwareAddr, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Delete removes the VXLAN device named dev (and with it its routes and
// entries) and the iptables rules Up added. A missing device is fine.
func Delete(dev string) error {
	if dev == "" {
		dev = DefaultDevice
	}
	var errs []error
	if l, err := netlink.LinkByName(dev); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("overlay: delete %s: %w", dev, err))
		}
	}
	for _, r := range rules(dev) {
		if out, err := iptables(append([]string{"-t", r.table, "-D", r.chain}, r.args...)...); err != nil &&
			!strings.Contains(out, "does a matching rule exist") && !strings.Contains(out, "Bad rule") {
			errs = append(errs, fmt.Errorf("overlay: remove rule %v: %v: %s", r.args, err, out))
		}
	}
	return errors.Join(errs...)
}

// rule is one iptables rule Up keeps first in a built-in chain.
type rule struct {
	table, chain string
	args         []string
}

// rules keep source addresses between node subnets (traffic leaving by
// the VXLAN device skips the bridge plugin's masquerade) and accept
// forwarding to and from the device (Docker's FORWARD policy is DROP).
func rules(dev string) []rule {
	c := []string{"-m", "comment", "--comment", "berth overlay"}
	return []rule{
		{"nat", "POSTROUTING", append([]string{"-o", dev}, append(c, "-j", "ACCEPT")...)},
		{"filter", "FORWARD", append([]string{"-i", dev}, append(c, "-j", "ACCEPT")...)},
		{"filter", "FORWARD", append([]string{"-o", dev}, append(c, "-j", "ACCEPT")...)},
	}
}

// ensureRules inserts each rule at the top of its chain unless present.
func ensureRules(dev string) error {
	for _, r := range rules(dev) {
		if _, err := iptables(append([]string{"-t", r.table, "-C", r.chain}, r.args...)...); err == nil {
			continue
		}
		if out, err := iptables(append([]string{"-t", r.table, "-I", r.chain, "1"}, r.args...)...); err != nil {
			return fmt.Errorf("overlay: iptables -t %s -I %s %s: %v: %s", r.table, r.chain, strings.Join(r.args, " "), err, out)
		}
	}
	return nil
}

func iptables(args ...string) (string, error) {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
