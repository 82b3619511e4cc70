//go:build linux

// Package oci is the driver that runs workloads as OCI bundles under an
// OCI runtime: runc (the default), crun, or gVisor's runsc (a user-space
// kernel sandbox). Root filesystems come from a rootfs.Provider (the image
// store), network namespaces from an optional network.Node, and each
// runtime runs in the foreground under a detached shim (driver/shim), so
// the runtime's exit code is the workload's and workloads survive a
// restart of the agent.
//
// Everything about workload id lives in <StateDir>/<id>: task.json (the
// task and its labels), bundle/ (config.json and the /etc files mounted
// into the container) and shim/ (the shim's state and logs). Each runtime
// keeps its own state under <StateDir>/runtime/<name>.
package oci

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/rootfs"
)

// Runtime names.
const (
	Runc  = "runc"
	Crun  = "crun"
	Runsc = "runsc"
)

// KnownRuntimes are the runtimes the driver knows how to drive, in the
// order auto-detection looks for them.
var KnownRuntimes = []string{Runc, Crun, Runsc}

// Options configure the driver.
type Options struct {
	// StateDir holds workload directories and runtime state (required).
	StateDir string
	// RootFS prepares root filesystems from images (required).
	RootFS rootfs.Provider
	// Network attaches workloads to the node network. Without it a
	// workload gets a network namespace of its own with only loopback,
	// and published ports are refused.
	Network network.Node
	// Runtimes maps runtime names (runc, crun, runsc) to binaries (a
	// path, or a name looked up in PATH). When nil, each known runtime is
	// looked up in BinDir and then in PATH. A runtime whose binary is not
	// found is not offered.
	Runtimes map[string]string
	// BinDir is searched before PATH when Runtimes is nil (e.g. the data
	// dir's bin).
	BinDir string
	// DefaultRuntime runs tasks that name none. Empty means runc, or the
	// first installed of crun and runsc when runc is not.
	DefaultRuntime string
	// RunscPlatform is runsc's --platform (default systrap, which needs no
	// KVM; kvm is faster where /dev/kvm exists).
	RunscPlatform string
	// Node is set as the berth.node label; List only returns this node's
	// workloads when it is set.
	Node string
	// PidsLimit bounds each workload's processes; zero means 4096,
	// negative means no limit.
	PidsLimit int64
	// LogMaxBytes and LogMaxFiles set log rotation (shim defaults when
	// zero).
	LogMaxBytes int64
	LogMaxFiles int
	// ResolvConf is the host resolv.conf workloads' name servers come
	// from (default /etc/resolv.conf) when DNS is not set.
	ResolvConf string
	// DNS is the node's DNS server (internal/network/dns), reachable from
	// workloads (the node network's gateway). When set, workloads'
	// resolv.conf names only it, searching "<namespace>.berth" and
	// "berth"; it forwards other names to the host's resolvers.
	DNS netip.Addr
	// DNSFrom, when set, replaces DNS: it is asked at every start (an
	// agent knows its node DNS address only once the server gave the node
	// its subnet) and may block until ctx ends.
	DNSFrom func(ctx context.Context) netip.Addr
}

// Driver implements driver.Driver on OCI runtimes.
type Driver struct {
	o        Options
	runtimes map[string]string
	// mu guards locks, which serialise lifecycle changes per workload.
	mu    sync.Mutex
	locks map[string]*idLock
}

// idLock is one workload's lock; refs counts holders and waiters so the
// entry goes away when nobody needs it.
type idLock struct {
	sync.Mutex
	refs int
}

// New returns a driver over o.StateDir. Several drivers (or agent
// processes, one after the other) over the same StateDir see the same
// workloads.
func New(o Options) (*Driver, error) {
	if o.StateDir == "" {
		return nil, errors.New("oci: Options.StateDir is required")
	}
	if o.RootFS == nil {
		return nil, errors.New("oci: Options.RootFS is required")
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	o.StateDir = abs
	if o.RunscPlatform == "" {
		o.RunscPlatform = "systrap"
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("oci: state dir: %w", err)
	}
	found := detectRuntimes(o)
	if o.DefaultRuntime == "" {
		o.DefaultRuntime = Runc
		for _, name := range KnownRuntimes {
			if _, ok := found[name]; ok {
				o.DefaultRuntime = name
				break
			}
		}
	}
	return &Driver{o: o, runtimes: found, locks: map[string]*idLock{}}, nil
}

// detectRuntimes returns the runtimes whose binaries exist.
func detectRuntimes(o Options) map[string]string {
	found := map[string]string{}
	if o.Runtimes != nil {
		for name, p := range o.Runtimes {
			if !strings.Contains(p, "/") {
				if lp, err := exec.LookPath(p); err == nil {
					p = lp
				}
			}
			if isExecutable(p) {
				found[name] = p
			}
		}
		return found
	}
	for _, name := range KnownRuntimes {
		if o.BinDir != "" {
			if p := filepath.Join(o.BinDir, name); isExecutable(p) {
				found[name] = p
				continue
			}
		}
		if p, err := exec.LookPath(name); err == nil {
			found[name] = p
		}
	}
	return found
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "oci" }

// Runtimes returns the names of the installed runtimes, sorted.
func (d *Driver) Runtimes() []string {
	out := make([]string, 0, len(d.runtimes))
	for name := range d.runtimes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// DefaultRuntime is the runtime tasks that name none run under.
func (d *Driver) DefaultRuntime() string { return d.o.DefaultRuntime }

// Available implements driver.Driver: the default runtime must be
// installed.
func (d *Driver) Available(ctx context.Context) error {
	if len(d.runtimes) == 0 {
		return errors.New("no OCI runtime is installed (install runc, crun or runsc)")
	}
	if _, ok := d.runtimes[d.o.DefaultRuntime]; !ok {
		return fmt.Errorf("the default OCI runtime %s is not installed on this node (installed: %v)", d.o.DefaultRuntime, d.Runtimes())
	}
	return nil
}

// runtime returns the runtime for a task's Runtime field (a binary name;
// "sandbox", the spec's name for runsc, is accepted too).
func (d *Driver) runtime(name string) (*runtime, error) {
	switch name {
	case "":
		name = d.o.DefaultRuntime
	case "sandbox": // what specs call runsc
		name = Runsc
	}
	p, ok := d.runtimes[name]
	if !ok {
		switch name {
		case Runc, Crun, Runsc:
			return nil, fmt.Errorf("runtime %s is not installed on this node", name)
		}
		return nil, fmt.Errorf("unknown runtime %q (berth knows runc, crun and runsc)", name)
	}
	return &runtime{name: name, path: p, root: filepath.Join(d.o.StateDir, "runtime", name), platform: d.o.RunscPlatform}, nil
}

// lock serialises lifecycle operations on one workload; call the
// returned function to unlock.
func (d *Driver) lock(id string) func() {
	d.mu.Lock()
	l, ok := d.locks[id]
	if !ok {
		l = &idLock{}
		d.locks[id] = l
	}
	l.refs++
	d.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		d.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(d.locks, id)
		}
		d.mu.Unlock()
	}
}

var (
	_ driver.Driver        = (*Driver)(nil)
	_ driver.InsideDialer  = (*Driver)(nil)
	_ driver.RuntimeLister = (*Driver)(nil)
)
