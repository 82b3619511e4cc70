package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/oci"
	"github.com/berth-dev/berth/internal/driver/process"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/network/cni"
)

// NativeOptions configure berth's own runtime path: the image store, the
// node network, driver oci (runc, crun, runsc) and driver process.
type NativeOptions struct {
	// Disabled turns the native path off (docker only).
	Disabled bool
	// Bridge and Subnet are the node network's bridge and IPv4 subnet
	// (defaults berth0 and 10.89.0.0/24).
	Bridge string
	Subnet netip.Prefix
	// Runtimes restricts the OCI runtimes offered (runc, crun, runsc);
	// empty offers every one installed.
	Runtimes []string
	// DefaultRuntime runs oci apps that name none (default runc).
	DefaultRuntime string
	// RegistryConfig is a docker config.json with registry credentials.
	RegistryConfig string
	// InsecureRegistries are spoken to over plain HTTP (loopback always is).
	InsecureRegistries []string
	// NoNetwork leaves the node network out: process instances share the
	// host's network and cannot publish ports.
	NoNetwork bool
	// ImageStoreMax bounds the image store: every ImageGCInterval,
	// unreferenced layers are deleted and, past this size, least recently
	// used images no instance uses are evicted. Zero: only unreferenced data.
	ImageStoreMax int64
	// ImageGCInterval is how often the image store is collected (default
	// 10m).
	ImageGCInterval time.Duration
	// FromServer (berth agent): the node network's subnet is the native
	// half of the subnet the server allocates this node (Node.Subnet,
	// model.NativeSubnet) and other nodes are reached over the VXLAN
	// overlay. Subnet is used only when no allocation arrives within
	// SubnetWait (default DefaultSubnetWait).
	FromServer bool
	SubnetWait time.Duration
	// OverlayPort is the overlay's VXLAN UDP port (default
	// model.OverlayPort); every node of a cluster must use the same.
	OverlayPort int
	// DNS is the node DNS server's address on the node network (its
	// gateway); oci workloads use it as their name server. Invalid: the
	// host's resolvers.
	DNS netip.Addr
	// DNSFrom, when set, replaces DNS: asked at every oci start (berth
	// agent: node DNS starts once the node's subnet is known).
	DNSFrom func(ctx context.Context) netip.Addr
}

// native is the assembled native runtime path.
type native struct {
	images  *image.Service
	network *cni.Network
	// lazy stands in for network until the node's subnet is known
	// (FromServer); startNetwork fills it.
	lazy    *lazyNet
	netOpts cni.Options
	oci     *oci.Driver
	process *process.Driver
}

// startNative opens the image store and node network under dataDir and
// builds drivers oci and process. A part the host cannot support is left
// out with a warning, so docker-only hosts keep working.
func startNative(dataDir, node string, o NativeOptions, log *slog.Logger) (*native, error) {
	n := &native{}
	if o.Disabled {
		return n, nil
	}
	var err error
	n.netOpts = cni.Options{StateDir: filepath.Join(dataDir, "network"), BridgeName: o.Bridge}
	var nodeNet network.Node
	var dnsAddr netip.Addr
	switch {
	case o.NoNetwork:
	case o.FromServer:
		wait := o.SubnetWait
		if wait <= 0 {
			wait = DefaultSubnetWait
		}
		n.lazy = newLazyNet(wait + time.Minute)
		nodeNet, dnsAddr = n.lazy, o.DNS
	default:
		if err := n.startNetwork(o.Subnet, 0); err != nil {
			log.Warn("node network unavailable: oci and process instances get no address and cannot publish ports", "err", err)
		} else {
			nodeNet, dnsAddr = n.network, o.DNS
		}
	}
	n.process = process.New(process.Options{StateDir: filepath.Join(dataDir, "process"), Node: node, Network: nodeNet})
	n.images, err = image.Open(filepath.Join(dataDir, "images"), image.Options{
		InsecureRegistries: o.InsecureRegistries, DefaultAuth: image.Auth{ConfigPath: o.RegistryConfig}})
	if err != nil {
		log.Warn("image store unavailable: driver oci is off on this node", "err", err)
		return n, nil
	}
	var runtimes map[string]string
	if len(o.Runtimes) > 0 {
		runtimes = map[string]string{}
		for _, r := range o.Runtimes {
			p, err := exec.LookPath(r)
			if err != nil {
				log.Warn("OCI runtime not found; not offered", "runtime", r, "err", err)
				continue
			}
			runtimes[r] = p
		}
	}
	n.oci, err = oci.New(oci.Options{StateDir: filepath.Join(dataDir, "oci"), RootFS: n.images, Network: nodeNet,
		Runtimes: runtimes, BinDir: filepath.Join(dataDir, "bin"), DefaultRuntime: o.DefaultRuntime, Node: node, DNS: dnsAddr,
		DNSFrom: o.DNSFrom})
	if err != nil {
		n.images.Close()
		return nil, fmt.Errorf("driver oci: %w", err)
	}
	return n, nil
}

// startNetwork starts the node network on subnet (invalid: the default)
// with the bridge MTU mtu (0: the default route's) and hands it to the
// drivers waiting on lazy. A failure is kept in lazy for their calls.
func (n *native) startNetwork(subnet netip.Prefix, mtu int) error {
	o := n.netOpts
	o.Subnet, o.MTU = subnet, mtu
	nw, err := cni.New(o)
	if err != nil {
		if n.lazy != nil {
			n.lazy.fail(err)
		}
		return err
	}
	n.network = nw
	if n.lazy != nil {
		n.lazy.set(nw)
	}
	return nil
}

// drivers adds the native drivers to m.
func (n *native) drivers(m map[string]driver.Driver) {
	if n.oci != nil {
		m["oci"] = n.oci
	}
	if n.process != nil {
		m["process"] = n.process
	}
}

// gcImages collects the image store every interval until ctx ends.
func (n *native) gcImages(ctx context.Context, o NativeOptions, log *slog.Logger) {
	if n.images == nil {
		return
	}
	every := o.ImageGCInterval
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := n.images.GC(ctx, o.ImageStoreMax)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("image store gc", "err", err)
		case res.FreedBytes > 0:
			log.Info("image store gc", "freed", model.ByteSize(res.FreedBytes).Human(), "evicted", res.Evicted)
		}
	}
}

// close releases the image store's lock. Workloads keep running.
func (n *native) close() {
	if n.images != nil {
		n.images.Close()
	}
}
