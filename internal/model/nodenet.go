package model

import (
	"fmt"
	"net"
	"net/netip"
)

// Node network layout.
//
// The server gives every node a subnet (Node.Subnet, a /24 by default) of
// the cluster CIDR. The node splits it in two halves of equal size:
//
//	10.90.3.0/24 → native 10.90.3.0/25   gateway 10.90.3.1   (CNI bridge berth0)
//	             → docker 10.90.3.128/25 gateway 10.90.3.129 (berth-managed Docker network)
//
// The overlay routes the whole node subnet to the node, so both halves are
// reachable from every other node. The smallest node subnet is a /29 (two
// /30 halves with one usable address each besides the gateway).

// VXLAN defaults of the overlay between nodes.
const (
	// OverlayVNI is the VXLAN network identifier of the node overlay.
	OverlayVNI = 4789
	// OverlayPort is the UDP port VXLAN packets travel on (IANA).
	OverlayPort = 4789
	// OverlayHeader is what VXLAN encapsulation adds to a packet (outer
	// IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14): overlay MTU is the
	// underlay MTU minus this.
	OverlayHeader = 50
)

// VTEP is a node's VXLAN tunnel endpoint.
type VTEP struct {
	// MAC is the hardware address of the node's VXLAN device.
	MAC string `json:"mac"`
	// VNI and Port are those the device was created with.
	VNI  int `json:"vni,omitempty"`
	Port int `json:"port,omitempty"`
	// MTU is the MTU of the device (underlay MTU - OverlayHeader).
	MTU int `json:"mtu,omitempty"`
}

// Validate reports a VTEP that peers could not use, naming the field.
func (v *VTEP) Validate() error {
	if _, err := net.ParseMAC(v.MAC); err != nil {
		return fmt.Errorf("vtep.mac: %q is not a MAC address", v.MAC)
	}
	if v.VNI < 0 || v.VNI > 1<<24-1 {
		return fmt.Errorf("vtep.vni: %d out of range 0-16777215", v.VNI)
	}
	if v.Port < 0 || v.Port > 65535 {
		return fmt.Errorf("vtep.port: %d out of range", v.Port)
	}
	return nil
}

// ParseNodeSubnet parses a node subnet: an IPv4 prefix of length 8 to 29
// with no host bits set.
func ParseNodeSubnet(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("node subnet %q: %v", cidr, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("node subnet %q: not IPv4", cidr)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("node subnet %q: host bits set (want %s)", cidr, p.Masked())
	}
	if p.Bits() < 8 || p.Bits() > 29 {
		return netip.Prefix{}, fmt.Errorf("node subnet %q: prefix length must be 8-29", cidr)
	}
	return p, nil
}

// NativeSubnet returns the lower half of node subnet cidr, used by the
// node's CNI bridge (oci and process drivers), and its gateway (the
// half's first address, held by the bridge). 10.90.3.0/24 →
// 10.90.3.0/25, 10.90.3.1.
func NativeSubnet(cidr string) (prefix netip.Prefix, gateway netip.Addr, err error) {
	return half(cidr, 0)
}

// DockerSubnet returns the upper half of node subnet cidr, used by the
// berth-managed Docker network of the node, and its gateway (the half's
// first address). 10.90.3.0/24 → 10.90.3.128/25, 10.90.3.129.
func DockerSubnet(cidr string) (prefix netip.Prefix, gateway netip.Addr, err error) {
	return half(cidr, 1)
}

// half returns half i (0 lower, 1 upper) of node subnet cidr and the
// half's gateway.
func half(cidr string, i int) (netip.Prefix, netip.Addr, error) {
	p, err := ParseNodeSubnet(cidr)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	base := p.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	bits := p.Bits() + 1
	v += uint32(i) << (32 - bits)
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return netip.PrefixFrom(a, bits), a.Next(), nil
}
