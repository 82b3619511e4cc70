//go:build linux

// Package cni implements network.Node with CNI: each workload gets a named
// network namespace, a veth on the node's bridge with an address from
// host-local IPAM, and its host ports published by the portmap plugin
// (reachable on the host's addresses and on 127.0.0.1). Plugins are
// driven through libcni; the binaries come from Debian's
// containernetworking-plugins package.
//
// Attachment records and host-port claims are files under StateDir, so a
// restarted agent knows every attachment, and Detach can clean up after a
// crash in the middle of Attach.
package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/network"
)

// Defaults for Options.
const (
	// DefaultBridgeName is the node bridge's name.
	DefaultBridgeName = "berth0"
	// DefaultNetNSDir is where workload namespaces are pinned; it is the
	// directory `ip netns` uses, so `ip netns exec berth-<id> …` works.
	DefaultNetNSDir = "/run/netns"
	// debianPackage ships the plugin binaries on Debian and Ubuntu.
	debianPackage = "containernetworking-plugins"
	// ifName is the workload's interface inside its namespace.
	ifName = "eth0"
)

// DefaultSubnet is the node network's default address range.
var DefaultSubnet = netip.MustParsePrefix("10.89.0.0/24")

// DefaultPluginDirs are searched for CNI plugin binaries: Debian's
// location first, then the upstream one.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Options configure a node network.
type Options struct {
	// StateDir holds the conflist, IPAM leases, libcni's cache, attachment
	// records and port claims (e.g. <dataDir>/network). Required.
	StateDir string
	// BridgeName is the node bridge (at most 15 bytes); default "berth0".
	// It also names the CNI network.
	BridgeName string
	// Subnet is the IPv4 range workloads get addresses from; the first
	// address is the bridge's (the gateway). Default 10.89.0.0/24; the
	// cluster gives each node its own.
	Subnet netip.Prefix
	// PluginDirs are searched for the CNI plugins; default
	// DefaultPluginDirs.
	PluginDirs []string
	// MTU of the bridge and veths; zero means the MTU of the interface
	// holding the default route (or the kernel's default if none).
	MTU int
	// NetNSDir is where namespaces are pinned as berth-<id>; default
	// DefaultNetNSDir.
	NetNSDir string
}

// Network is the node network. It implements network.Node; its methods
// are safe for concurrent use.
type Network struct {
	opts   Options
	list   *libcni.NetworkConfigList
	cni    *libcni.CNIConfig
	store  *store
	locks  idLocks
	gw     netip.Addr
	claimM sync.Mutex // serializes port checks and claims
	// cniMu serializes plugin runs: the plugins create shared iptables
	// chains and the bridge with check-then-create steps that race.
	cniMu sync.Mutex
}

var _ network.Node = (*Network)(nil)

// New checks the host (plugins, iptables, subnet), writes the conflist
// under opts.StateDir and returns the node network. Existing attachments
// in StateDir are picked up.
func New(opts Options) (*Network, error) {
	if opts.StateDir == "" {
		return nil, errors.New("cni: Options.StateDir is required")
	}
	if opts.BridgeName == "" {
		opts.BridgeName = DefaultBridgeName
	}
	if len(opts.BridgeName) > 15 || strings.ContainsAny(opts.BridgeName, "/ \t\n") {
		return nil, fmt.Errorf("cni: bridge name %q is not a valid interface name (at most 15 bytes, no '/' or spaces)", opts.BridgeName)
	}
	if !opts.Subnet.IsValid() {
		opts.Subnet = DefaultSubnet
	}
	opts.Subnet = opts.Subnet.Masked()
	if !opts.Subnet.Addr().Is4() || opts.Subnet.Bits() > 30 || opts.Subnet.Bits() < 8 {
		return nil, fmt.Errorf("cni: subnet %v must be an IPv4 prefix between /8 and /30", opts.Subnet)
	}
	if len(opts.PluginDirs) == 0 {
		opts.PluginDirs = DefaultPluginDirs
	}
	if opts.NetNSDir == "" {
		opts.NetNSDir = DefaultNetNSDir
	}
	if opts.MTU < 0 {
		return nil, fmt.Errorf("cni: MTU must not be negative, got %d", opts.MTU)
	}
	if opts.MTU == 0 {
		opts.MTU = defaultRouteMTU()
	}
	if err := checkHost(opts.PluginDirs); err != nil {
		return nil, err
	}
	if err := checkSubnet(opts.Subnet, opts.BridgeName); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("cni: state directory: %w", err)
	}
	gw := gatewayFor(opts.Subnet)
	conf, err := buildConflist(conflistParams{
		Name: opts.BridgeName, Bridge: opts.BridgeName, Subnet: opts.Subnet, Gateway: gw,
		MTU: opts.MTU, IPAMDir: filepath.Join(opts.StateDir, "ipam"),
	})
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(opts.StateDir, opts.BridgeName+".conflist"), conf); err != nil {
		return nil, fmt.Errorf("cni: write conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return nil, fmt.Errorf("cni: generated conflist is invalid: %w", err)
	}
	// Workloads reach the world through the bridge (isGateway, ipMasq).
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	st, err := newStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	// No Attach is in flight yet: drop claims whose owner has no record.
	if err := st.pruneClaims(); err != nil {
		return nil, err
	}
	return &Network{
		opts: opts, list: list, store: st, gw: gw,
		cni: libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, filepath.Join(opts.StateDir, "cache"), nil),
	}, nil
}

// Options returns the options in effect, defaults filled in.
func (n *Network) Options() Options {
	o := n.opts
	o.PluginDirs = append([]string(nil), o.PluginDirs...)
	return o
}

// NetNSPath is where id's namespace is pinned.
func (n *Network) NetNSPath(id string) string {
	return filepath.Join(n.opts.NetNSDir, "berth-"+id)
}

// Attach implements network.Node. A zero HostPort is given a free port,
// returned in the attachment. Attaching an id that is attached already
// returns the existing attachment, whatever ports are asked for.
func (n *Network) Attach(ctx context.Context, id string, ports []driver.PortBinding) (network.Attachment, error) {
	if err := validID(id); err != nil {
		return network.Attachment{}, err
	}
	ports, err := normalizePorts(ports)
	if err != nil {
		return network.Attachment{}, fmt.Errorf("cni: attach %s: %w", id, err)
	}
	unlock := n.locks.lock(id)
	defer unlock()

	r, ok, err := n.store.load(id)
	if err != nil {
		return network.Attachment{}, err
	}
	if ok && r.Phase == phaseReady {
		return copyAttachment(r.Attachment), nil
	}
	if ok {
		// A crash interrupted an earlier Attach: clear what it made.
		if err := n.teardown(ctx, r); err != nil {
			return network.Attachment{}, fmt.Errorf("cni: attach %s: clean up an interrupted attach: %w", id, err)
		}
	}

	r = record{Attachment: network.Attachment{ID: id, NetNS: n.NetNSPath(id), Ports: ports}, Phase: phaseAttaching}
	if err := n.reservePorts(&r); err != nil {
		return network.Attachment{}, err
	}
	a, err := n.plumb(ctx, &r)
	if err != nil {
		// Undo even if ctx is what failed.
		if cerr := n.teardown(context.WithoutCancel(ctx), r); cerr != nil {
			err = fmt.Errorf("%w (cleanup failed, Detach %s to retry: %v)", err, id, cerr)
		}
		return network.Attachment{}, err
	}
	return a, nil
}

// reservePorts writes r's record and claims its host ports, refusing any
// port published for another workload or bound by a host process. On
// error nothing is left: claims are released and the record removed.
func (n *Network) reservePorts(r *record) (err error) {
	n.claimM.Lock()
	defer n.claimM.Unlock()
	if err := n.store.save(*r); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			n.releaseClaims(r.ID)
			n.store.remove(r.ID)
		}
	}()
	for i := range r.Ports {
		p := &r.Ports[i]
		if p.HostPort == 0 {
			if err := n.claimFree(r.ID, p); err != nil {
				return fmt.Errorf("cni: attach %s: %w", r.ID, err)
			}
			continue
		}
		hp := hostPort{p.HostPort, p.Protocol}
		owner, ok, err := n.store.claim(hp, r.ID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("cni: attach %s: %w", r.ID, allocatedError(hp, owner))
		}
		free, err := probePort(hp)
		if err != nil {
			return fmt.Errorf("cni: attach %s: %w", r.ID, err)
		}
		if !free {
			return fmt.Errorf("cni: attach %s: %w", r.ID, allocatedError(hp, ""))
		}
	}
	return n.store.save(*r)
}

// claimFree picks a free host port for p and claims it.
func (n *Network) claimFree(id string, p *driver.PortBinding) error {
	for range 20 {
		port, err := pickPort(p.Protocol)
		if err != nil {
			return err
		}
		if _, ok, err := n.store.claim(hostPort{port, p.Protocol}, id); err != nil {
			return err
		} else if ok {
			p.HostPort = port
			return nil
		}
	}
	return fmt.Errorf("no free %s host port found for port %q", p.Protocol, p.Name)
}

// plumb makes the namespace and runs CNI ADD for r, then marks it ready.
func (n *Network) plumb(ctx context.Context, r *record) (network.Attachment, error) {
	if err := createNetNS(r.NetNS); err != nil {
		return network.Attachment{}, fmt.Errorf("cni: attach %s: %w", r.ID, err)
	}
	r.CNIAdded = true
	if err := n.store.save(*r); err != nil {
		return network.Attachment{}, err
	}
	n.cniMu.Lock()
	res, err := n.cni.AddNetworkList(ctx, n.list, n.runtimeConf(*r, r.NetNS))
	n.cniMu.Unlock()
	if err != nil {
		return network.Attachment{}, fmt.Errorf("cni: attach %s: %w", r.ID, err)
	}
	ip, gw, err := resultAddrs(res, n.opts.Subnet)
	if err != nil {
		return network.Attachment{}, fmt.Errorf("cni: attach %s: %w", r.ID, err)
	}
	if !gw.IsValid() {
		gw = n.gw
	}
	// portmap's DNAT of 127.0.0.1:<hostPort> needs 127/8 to be routable
	// out of the bridge (portmap sets this too; be explicit).
	if err := writeSysctl("net/ipv4/conf/"+n.opts.BridgeName+"/route_localnet", "1"); err != nil {
		return network.Attachment{}, fmt.Errorf("cni: attach %s: %w", r.ID, err)
	}
	r.IP, r.Gateway, r.Phase = ip, gw, phaseReady
	if err := n.store.save(*r); err != nil {
		return network.Attachment{}, err
	}
	return copyAttachment(r.Attachment), nil
}

// Get implements network.Node. An attachment interrupted by a crash is
// not returned (ok=false) until Attach or Detach deals with it.
func (n *Network) Get(ctx context.Context, id string) (network.Attachment, bool, error) {
	if err := validID(id); err != nil {
		return network.Attachment{}, false, err
	}
	r, ok, err := n.store.load(id)
	if err != nil || !ok || r.Phase != phaseReady {
		return network.Attachment{}, false, err
	}
	return copyAttachment(r.Attachment), true, nil
}

// List returns the ids that have a record, complete or not (after a
// restart, the caller can Detach those it no longer runs).
func (n *Network) List(ctx context.Context) ([]string, error) {
	return n.store.ids()
}

// Detach implements network.Node: CNI DEL (ports, address, veth), then
// the namespace, the port claims and the record. It also cleans up an
// attachment interrupted by a crash.
func (n *Network) Detach(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	unlock := n.locks.lock(id)
	defer unlock()
	r, ok, err := n.store.load(id)
	if err != nil || !ok {
		return err
	}
	if err := n.teardown(ctx, r); err != nil {
		return fmt.Errorf("cni: detach %s: %w", id, err)
	}
	return nil
}

// teardown removes whatever exists of r, in reverse order of creation,
// and removes the record last. The caller holds r.ID's lock.
func (n *Network) teardown(ctx context.Context, r record) error {
	if r.CNIAdded {
		nsPath, ip := r.NetNS, r.IP
		if !isNetNS(nsPath) {
			// Gone (e.g. a reboot emptied /run/netns): the plugins still
			// release the address and their rules, except the bridge's
			// masquerade rules, removed below.
			nsPath = ""
			if !ip.IsValid() { // crashed before the record got the address
				if res, err := n.cni.GetNetworkListCachedResult(n.list, n.runtimeConf(r, "")); err == nil && res != nil {
					ip, _, _ = resultAddrs(res, n.opts.Subnet)
				}
			}
		}
		n.cniMu.Lock()
		err := n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(r, nsPath))
		if err == nil {
			// Also with the namespace present: a sandbox runtime (gVisor)
			// takes the veth's addresses into its own netstack, and then
			// the plugin finds nothing to clean either.
			err = teardownIPMasq(n.list.Name, r.ID, ip)
		}
		n.cniMu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := removeNetNS(r.NetNS); err != nil {
		return err
	}
	n.claimM.Lock()
	defer n.claimM.Unlock()
	if err := n.releaseClaims(r.ID); err != nil {
		return err
	}
	return n.store.remove(r.ID)
}

// releaseClaims drops every port claim owned by id (including ports
// assigned before a crash, which the record may not list yet).
func (n *Network) releaseClaims(id string) error {
	cl, err := n.store.claims()
	if err != nil {
		return err
	}
	for hp, owner := range cl {
		if owner == id {
			if err := n.store.release(hp, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// runtimeConf is the libcni runtime configuration for r.
func (n *Network) runtimeConf(r record, nsPath string) *libcni.RuntimeConf {
	pm := make([]portMapping, 0, len(r.Ports))
	for _, p := range r.Ports {
		if p.HostPort > 0 {
			pm = append(pm, portMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
		}
	}
	return &libcni.RuntimeConf{
		ContainerID:    r.ID,
		NetNS:          nsPath,
		IfName:         ifName,
		CapabilityArgs: map[string]any{"portMappings": pm},
	}
}

// resultAddrs picks the workload's address and gateway from a CNI result.
func resultAddrs(res types.Result, subnet netip.Prefix) (ip, gw netip.Addr, err error) {
	if res == nil {
		return ip, gw, errors.New("CNI ADD returned no result")
	}
	cur, err := types100.GetResult(res)
	if err != nil {
		return ip, gw, fmt.Errorf("CNI result: %w", err)
	}
	for _, c := range cur.IPs {
		a, ok := netip.AddrFromSlice(c.Address.IP)
		if !ok || !subnet.Contains(a.Unmap()) {
			continue
		}
		ip = a.Unmap()
		if g, ok := netip.AddrFromSlice(c.Gateway); ok {
			gw = g.Unmap()
		}
		return ip, gw, nil
	}
	return ip, gw, fmt.Errorf("CNI result has no address in %v", subnet)
}

// copyAttachment returns a with its own Ports slice.
func copyAttachment(a network.Attachment) network.Attachment {
	a.Ports = append([]driver.PortBinding(nil), a.Ports...)
	return a
}

// checkHost verifies that the plugins and iptables are installed.
func checkHost(dirs []string) error {
	var missing []string
	for _, p := range pluginTypes {
		found := false
		for _, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cni: CNI plugins %s not found in %s: install them (Debian/Ubuntu: apt-get install %s) or set PluginDirs",
			strings.Join(missing, ", "), strings.Join(dirs, ", "), debianPackage)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("cni: iptables not found in PATH: the portmap and firewall plugins need it (Debian/Ubuntu: apt-get install iptables)")
	}
	return nil
}

// writeSysctl sets /proc/sys/<key> to value.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

// idLocks is a lock per workload id.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks id and returns the unlock function.
func (l *idLocks) lock(id string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
