// Package subnets gives every node a subnet of the cluster CIDR: a pure
// Pool that picks the first free subnet, and a controller that stores
// allocations (/subnets/<cidr> → node name, together with Node.Subnet in
// one Txn), keeps them while the node exists and releases them when it is
// removed.
package subnets

import (
	"fmt"
	"net/netip"
)

// Defaults of the cluster network.
const (
	DefaultClusterCIDR = "10.90.0.0/16"
	DefaultSubnetSize  = 24
)

// Pool is the cluster CIDR cut into node subnets of one size.
type Pool struct {
	CIDR netip.Prefix
	Size int
}

// ParsePool checks a cluster CIDR and node subnet size: IPv4, no host
// bits, size between the CIDR's length and 29 (a node subnet is split in
// two halves, see model.NativeSubnet).
func ParsePool(cidr string, size int) (Pool, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Pool{}, fmt.Errorf("cluster CIDR %q: not a CIDR (want e.g. %s)", cidr, DefaultClusterCIDR)
	}
	if !p.Addr().Is4() {
		return Pool{}, fmt.Errorf("cluster CIDR %q: only IPv4 is supported", cidr)
	}
	if p.Bits() < 8 {
		return Pool{}, fmt.Errorf("cluster CIDR %q: prefix shorter than /8", cidr)
	}
	if p.Masked() != p {
		return Pool{}, fmt.Errorf("cluster CIDR %q: host bits set (did you mean %s?)", cidr, p.Masked())
	}
	if size < p.Bits() || size > 29 {
		return Pool{}, fmt.Errorf("node subnet size %d: must be between the cluster CIDR's /%d and 29", size, p.Bits())
	}
	if size-p.Bits() > 24 {
		return Pool{}, fmt.Errorf("node subnet size %d: more than 2^24 subnets in %s", size, p)
	}
	return Pool{CIDR: p, Size: size}, nil
}

// Len is the number of node subnets in the pool.
func (p Pool) Len() int { return 1 << (p.Size - p.CIDR.Bits()) }

// At returns the i-th node subnet of the pool.
func (p Pool) At(i int) netip.Prefix {
	b := p.CIDR.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i) << (32 - p.Size)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.Size)
}

// Contains reports whether s is one of the pool's node subnets.
func (p Pool) Contains(s netip.Prefix) bool {
	return s.Bits() == p.Size && s.Masked() == s && p.CIDR.Contains(s.Addr())
}

// Next returns the first subnet of the pool that overlaps none of used,
// or an error when the pool is exhausted.
func (p Pool) Next(used []netip.Prefix) (netip.Prefix, error) {
	return p.Allocator(used).Next()
}

// Allocator hands out a pool's free subnets in order, each once: one
// pass over the pool for any number of allocations, where calling Next
// with a growing used list would rescan it for each.
type Allocator struct {
	pool  Pool
	same  map[netip.Prefix]bool // used subnets of the pool's size
	other []netip.Prefix        // used prefixes of other sizes (a resized pool)
	i     int                   // the next index to consider
}

// Allocator starts handing out the subnets that overlap none of used.
func (p Pool) Allocator(used []netip.Prefix) *Allocator {
	a := &Allocator{pool: p, same: make(map[netip.Prefix]bool, len(used))}
	for _, u := range used {
		if u.Bits() == p.Size {
			a.same[u.Masked()] = true
		} else {
			a.other = append(a.other, u)
		}
	}
	return a
}

// Next returns the first subnet not handed out nor used, or an error when
// the pool is exhausted.
func (a *Allocator) Next() (netip.Prefix, error) {
	p := a.pool
next:
	for ; a.i < p.Len(); a.i++ {
		s := p.At(a.i)
		if a.same[s] {
			continue
		}
		for _, o := range a.other {
			if o.Overlaps(s) {
				continue next
			}
		}
		a.i++
		return s, nil
	}
	return netip.Prefix{}, fmt.Errorf("cluster CIDR %s is exhausted: all %d /%d node subnets are allocated (remove nodes or use a larger --cluster-cidr)", p.CIDR, p.Len(), p.Size)
}
