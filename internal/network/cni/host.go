//go:build linux

package cni

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// defaultRouteMTU returns the MTU of the interface holding the IPv4
// default route, or 0 (the bridge plugin's default) if there is none.
func defaultRouteMTU() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return 0
}

// checkSubnet refuses a subnet that overlaps a route through an interface
// other than our bridge (Docker's docker0, the LAN, a VPN): workloads
// would shadow, or be shadowed by, those addresses.
func checkSubnet(subnet netip.Prefix, bridge string) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("cni: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if ones == 0 || !ok {
			continue
		}
		dst := netip.PrefixFrom(a.Unmap(), ones).Masked()
		if !dst.Overlaps(subnet) {
			continue
		}
		name := fmt.Sprintf("link %d", r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		if name == bridge {
			continue
		}
		return fmt.Errorf("cni: subnet %v overlaps %v routed via %s: choose another Subnet", subnet, dst, name)
	}
	return nil
}
