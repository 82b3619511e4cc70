package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/oci"
	"github.com/berth-dev/berth/internal/driver/process"
	"github.com/berth-dev/berth/internal/image"
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
}

// native is the assembled native runtime path.
type native struct {
	images  *image.Service
	network *cni.Network
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
	n.network, err = cni.New(cni.Options{StateDir: filepath.Join(dataDir, "network"), BridgeName: o.Bridge, Subnet: o.Subnet})
	if err != nil {
		log.Warn("node network unavailable: oci and process instances get no address and cannot publish ports", "err", err)
		n.network = nil
	}
	var nodeNet network.Node
	if n.network != nil {
		nodeNet = n.network
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
		Runtimes: runtimes, BinDir: filepath.Join(dataDir, "bin"), DefaultRuntime: o.DefaultRuntime, Node: node})
	if err != nil {
		n.images.Close()
		return nil, fmt.Errorf("driver oci: %w", err)
	}
	return n, nil
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

// close releases the image store's lock. Workloads keep running.
func (n *native) close() {
	if n.images != nil {
		n.images.Close()
	}
}
