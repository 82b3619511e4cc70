package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DefaultTable is the nftables table (family inet) of a node.
const DefaultTable = "berth"

// Names inside the table besides the groups and app chains.
const (
	setLocal    = "local"
	setSources  = "sources"
	setRanges   = "ranges"
	setExempt   = "exempt"
	mapDispatch = "dispatch"
	chainName   = "isolate"
)

// sockBuffer is the netlink socket buffer: a whole ruleset goes to the
// kernel in one transaction (the kernel caps it at net.core.wmem_max).
const sockBuffer = 4 << 20

// elemChunk bounds the elements of one netlink message (an attribute
// holds at most 64 KiB).
const elemChunk = 1024

// ipsDstNAT is the conntrack status bit of a destination-NATed
// connection (IPS_DST_NAT): a published port.
const ipsDstNAT = 1 << 5

// Applier loads Rulesets into one nftables table of the inet family, in
// the network namespace of the calling process. Every Apply replaces the
// table in one netlink transaction, so the kernel never holds half a
// ruleset and rules of an earlier run never survive. The table stays
// until Remove, also when the process dies (a killed berth's workloads
// stay isolated; its next start takes the table over). Not safe for
// concurrent use.
type Applier struct {
	conn    *nftables.Conn
	table   *nftables.Table
	applied *Ruleset
}

// NewApplier opens a netlink connection for table name (DefaultTable if
// empty); opts may pick another network namespace.
func NewApplier(name string, opts ...nftables.ConnOption) (*Applier, error) {
	if name == "" {
		name = DefaultTable
	}
	big := nftables.WithSockOptions(func(c *netlink.Conn) error {
		_ = c.SetWriteBuffer(sockBuffer)
		_ = c.SetReadBuffer(sockBuffer)
		return nil
	})
	c, err := nftables.New(append([]nftables.ConnOption{nftables.AsLasting(), big}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	a := &Applier{conn: c, table: &nftables.Table{Name: name, Family: nftables.TableFamilyINet}}
	return a, nil
}

// Table is the table's name.
func (a *Applier) Table() string { return a.table.Name }

// Apply makes the table hold exactly r and reports whether it loaded
// anything: not when r equals what the last successful Apply loaded.
func (a *Applier) Apply(r Ruleset) (bool, error) {
	if a.applied != nil && a.applied.Equal(r) {
		return false, nil
	}
	if err := a.load(r); err != nil {
		a.applied = nil
		return false, err
	}
	a.applied = &r
	return true, nil
}

// load replaces the table with r in one transaction.
func (a *Applier) load(r Ruleset) error {
	c, t := a.conn, a.table
	// Create-then-delete makes the delete valid whether or not the table
	// exists; all of it commits as one transaction in Flush.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	sets := map[string]*nftables.Set{}
	addAddrSet := func(name string, addrs []netip.Addr) error {
		sets[name] = &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr}
		return addSet(c, sets[name], addrElems(addrs))
	}
	if err := addAddrSet(setSources, r.Sources); err != nil {
		return err
	}
	if err := addAddrSet(setExempt, r.Exempt); err != nil {
		return err
	}
	sets[setRanges] = &nftables.Set{Table: t, Name: setRanges, KeyType: nftables.TypeIPAddr, Interval: true}
	if err := addSet(c, sets[setRanges], rangeElems(r.Ranges)); err != nil {
		return err
	}
	local := make([]netip.Addr, 0, len(r.Dests))
	for _, d := range r.Dests {
		local = append(local, d.Addr)
	}
	if err := addAddrSet(setLocal, local); err != nil {
		return err
	}
	for _, g := range slices.Sorted(maps.Keys(r.Groups)) {
		if err := addAddrSet(g, r.Groups[g]); err != nil {
			return err
		}
	}
	// One regular chain per local app: accept its groups' sources.
	for _, name := range slices.Sorted(maps.Keys(r.Chains)) {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
		for _, g := range r.Chains[name] {
			if s, ok := sets[g]; ok {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(append(ipv4(), matchAddr(saddrOffset, s)...), accept())})
			}
		}
	}
	dispatch := &nftables.Set{Table: t, Name: mapDispatch, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict, IsMap: true}
	var jumps []nftables.SetElement
	for _, d := range r.Dests {
		jumps = append(jumps, nftables.SetElement{Key: addr(d.Addr), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: d.Chain}})
	}
	if err := addSet(c, dispatch, jumps); err != nil {
		return err
	}
	policy := nftables.ChainPolicyAccept
	base := c.AddChain(&nftables.Chain{Name: chainName, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	for _, exprs := range rules(dispatch, sets) {
		c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: load table inet %s: %w", t.Name, err)
	}
	return nil
}

// Remove deletes the table if it exists.
func (a *Applier) Remove() error {
	a.applied = nil
	a.conn.AddTable(a.table)
	a.conn.DelTable(a.table)
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: remove table inet %s: %w", a.table.Name, err)
	}
	return nil
}

// Close releases the netlink connection.
func (a *Applier) Close() error { return a.conn.CloseLasting() }

// addSet adds s with elems, in chunks that fit a netlink attribute.
func addSet(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	first := elems[:min(len(elems), elemChunk)]
	if err := c.AddSet(s, first); err != nil {
		return fmt.Errorf("nftables: set %s: %w", s.Name, err)
	}
	for rest := elems[len(first):]; len(rest) > 0; {
		n := min(len(rest), elemChunk)
		if err := c.SetAddElements(s, rest[:n]); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.Name, err)
		}
		rest = rest[n:]
	}
	return nil
}

func addrElems(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, nftables.SetElement{Key: addr(a)})
	}
	return out
}

// rangeElems are the interval elements of ranges (sorted, disjoint): a
// start element and an end element one past the last address.
func rangeElems(ranges []netip.Prefix) []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range ranges {
		out = append(out, nftables.SetElement{Key: addr(p.Addr())})
		b := p.Addr().As4()
		last := binaryutil.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
		if last != ^uint32(0) {
			out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(last + 1), IntervalEnd: true})
		}
	}
	return out
}

func addr(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// reg1 is the 16-byte register 1.
const reg1 = 1

// IPv4 header offsets of the source and destination addresses.
const (
	saddrOffset = 12
	daddrOffset = 16
)

// rules is the base chain:
//
//	ct state established,related accept
//	ct status dnat accept
//	meta nfproto ipv4 ip saddr @exempt accept
//	meta nfproto ipv4 ip daddr vmap @dispatch   (jump to:  ip saddr @<group> accept ...)
//	meta nfproto ipv4 ip daddr @local ip saddr @sources drop
//	meta nfproto ipv4 ip daddr @local ip saddr @ranges drop
func rules(dispatch *nftables.Set, sets map[string]*nftables.Set) [][]expr.Any {
	ctBits := func(key expr.CtKey, mask uint32) []expr.Any {
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: key},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
			accept(),
		}
	}
	jump := append(ipv4(),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOffset, Len: 4},
		&expr.Lookup{SourceRegister: reg1, SetName: dispatch.Name, SetID: dispatch.ID, DestRegister: 0, IsDestRegSet: true})
	drop := func(from *nftables.Set) []expr.Any {
		d := append(ipv4(), matchAddr(daddrOffset, sets[setLocal])...)
		d = append(d, matchAddr(saddrOffset, from)...)
		return append(d, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	return [][]expr.Any{
		ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		ctBits(expr.CtKeySTATUS, ipsDstNAT),
		append(append(ipv4(), matchAddr(saddrOffset, sets[setExempt])...), accept()),
		jump,
		drop(sets[setSources]),
		drop(sets[setRanges]),
	}
}

// ipv4 matches IPv4 packets.
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// matchAddr matches the address at offset of the IPv4 header against s.
func matchAddr(offset uint32, s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
	}
}

func accept() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictAccept} }
