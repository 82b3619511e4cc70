//go:build linux

// Package process is the driver that runs a task's command directly on the
// host: no image and no root filesystem of its own, but its own cgroup
// (CPU, memory, pids limits), optionally its own network namespace from a
// network.Node, the task's user, environment and working directory, and a
// shim (internal/driver/shim) that supervises it, keeps its logs and
// outlives the agent.
//
// Task.Image must be empty or "host". Without Options.Network the
// workload shares the host's network: tasks with ports are refused
// (nothing could publish or isolate them) and DialInside dials the host's
// loopback.
//
// Everything about a workload lives in <StateDir>/<id>: task.json (labels,
// instance, the resolved command), the shim's shim.json, state.json and
// logs. A new Driver over the same StateDir sees the same workloads, so the
// agent reattaches after a restart.
package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/shim"
	"github.com/berth-dev/berth/internal/network"
)

// HostImage is the image name a process task may carry ("" also works).
const HostImage = "host"

// DefaultStateDir is where workloads are kept unless Options.StateDir says.
const DefaultStateDir = "/var/lib/berth/process"

// Options configure the driver.
type Options struct {
	// StateDir holds one directory per workload (default DefaultStateDir).
	StateDir string
	// Node is set as the berth.node label; List only returns this node's
	// workloads when it is set.
	Node string
	// Cgroups configures the per-workload cgroups (parent "berth" under
	// /sys/fs/cgroup by default).
	Cgroups cgroups.Options
	// Network gives each workload its own network namespace with an
	// address and published ports; nil shares the host network.
	Network network.Node
	// LogMaxBytes and LogMaxFiles set the shim's log rotation (defaults
	// 10 MiB, 3 files).
	LogMaxBytes int64
	LogMaxFiles int
}

// Driver implements driver.Driver for host processes.
type Driver struct {
	opts  Options
	cg    *cgroups.Manager
	cgErr error
	locks sync.Map // workload id → *sync.Mutex
}

// New returns a process driver. It does not fail for a node that cannot
// run processes; Available says why.
func New(o Options) *Driver {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	d := &Driver{opts: o}
	d.cg, d.cgErr = cgroups.New(o.Cgroups)
	return d
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "process" }

// Available implements driver.Driver: it needs root, cgroups and a
// writable state directory.
func (d *Driver) Available(context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("process driver: needs root (cgroups, namespaces, other users)")
	}
	if d.cgErr != nil {
		return fmt.Errorf("process driver: %w", d.cgErr)
	}
	if err := os.MkdirAll(d.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("process driver: state directory: %w", err)
	}
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		return fmt.Errorf("process driver: shims re-execute berth through /proc/self/exe: %w", err)
	}
	return nil
}

// lock serialises lifecycle changes of one workload.
func (d *Driver) lock(id string) func() {
	m, _ := d.locks.LoadOrStore(id, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// check refuses what a host process cannot do.
func (d *Driver) check(t driver.Task) error {
	switch {
	case t.Image != "" && t.Image != HostImage:
		return fmt.Errorf("process driver runs host commands, not images: image %q is not supported (leave it empty or use %q)", t.Image, HostImage)
	case len(t.Command)+len(t.Args) == 0:
		return errors.New("process driver: the task has no command (there is no image entrypoint to fall back to)")
	case len(t.Ports) > 0 && d.opts.Network == nil:
		return errors.New("process driver: published ports need a node network; without one workloads share the host network")
	case t.ReadOnlyRootFS:
		return errors.New("process driver: a read-only root filesystem needs an image (host processes share the host's)")
	case len(t.Tmpfs) > 0:
		return errors.New("process driver: tmpfs mounts need a container runtime")
	}
	return nil
}

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, t driver.Task) (string, error) {
	if err := d.Available(ctx); err != nil {
		return "", err
	}
	if err := d.check(t); err != nil {
		return "", err
	}
	cred, err := credential(t.User)
	if err != nil {
		return "", fmt.Errorf("process driver: %w", err)
	}
	id := newID()
	defer d.lock(id)()
	rec := record{
		ID: id, InstanceID: t.InstanceID, Labels: driver.WorkloadLabels(t, d.opts.Node), Ports: t.Ports, CreatedAt: time.Now().UTC(),
		Limits: cgroups.Limits{CPUMilli: t.CPUMilli, MemoryBytes: t.MemoryBytes},
		Spec: shim.Spec{
			Args: append(append([]string{}, t.Command...), t.Args...), Env: environ(t.Env), Dir: t.WorkingDir,
			Credential: cred, LogMaxBytes: d.opts.LogMaxBytes, LogMaxFiles: d.opts.LogMaxFiles,
		},
	}
	if err := d.save(rec); err != nil {
		return "", err
	}
	if err := d.launch(ctx, rec); err != nil {
		_ = d.teardown(context.WithoutCancel(ctx), id)
		return "", fmt.Errorf("start %s: %w", t.InstanceID, err)
	}
	return id, nil
}

// launch (re)creates the cgroup and network attachment and starts the
// shim.
func (d *Driver) launch(ctx context.Context, rec record) error {
	if d.cg == nil {
		return d.cgErr
	}
	cg, err := d.cg.Create(rec.ID, rec.Limits)
	if err != nil {
		return err
	}
	spec := rec.Spec
	spec.Cgroups = cg.Procs()
	if d.opts.Network != nil {
		att, err := d.opts.Network.Attach(ctx, rec.ID, rec.Ports)
		if err != nil {
			return err
		}
		spec.NetNS = att.NetNS
	}
	_, err = shim.Launch(d.dir(rec.ID), spec)
	return err
}

// Restart implements driver.Driver. Restarting a running workload does
// nothing.
func (d *Driver) Restart(ctx context.Context, id string) error {
	defer d.lock(id)()
	rec, err := d.load(id)
	if err != nil {
		return err
	}
	if st, err := shim.Read(d.dir(id)); err == nil && st.Running {
		return nil
	}
	// Anything the last run left behind in its cgroup goes first.
	if err := d.killLeftovers(ctx, id); err != nil {
		return err
	}
	if err := d.launch(ctx, rec); err != nil {
		return fmt.Errorf("restart %s: %w", rec.InstanceID, err)
	}
	return nil
}

// Stop implements driver.Driver: SIGTERM to the workload's process group,
// SIGKILL after grace, then whatever is left in its cgroup is killed.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	defer d.lock(id)()
	if _, err := d.load(id); err != nil {
		return err
	}
	dir := d.dir(id)
	if st, err := shim.Read(dir); err == nil && st.Running {
		_ = syscall.Kill(-st.PID, syscall.SIGTERM)
		wctx, cancel := context.WithTimeout(ctx, grace)
		st, _ = shim.Wait(wctx, dir)
		cancel()
		if st.Running {
			if err := d.kill(ctx, dir, st); err != nil {
				return err
			}
		}
	}
	return d.killLeftovers(ctx, id)
}

// killLeftovers kills what is left in the workload's cgroup (background
// processes that outlived the main one, or a workload whose shim died).
func (d *Driver) killLeftovers(ctx context.Context, id string) error {
	if d.cg == nil {
		return nil
	}
	return d.cg.Open(id).Kill(ctx)
}

// kill SIGKILLs a running workload's process group and waits for the shim
// to record the end.
func (d *Driver) kill(ctx context.Context, dir string, st shim.State) error {
	_ = syscall.Kill(-st.PID, syscall.SIGKILL)
	if _, err := shim.Wait(ctx, dir); err != nil {
		return fmt.Errorf("process driver: workload pid %d did not end after SIGKILL: %w", st.PID, err)
	}
	return nil
}

// Remove implements driver.Driver: kill, then delete the cgroup, network
// attachment and directory.
func (d *Driver) Remove(ctx context.Context, id string) error {
	defer d.lock(id)()
	if !validID(id) {
		return nil
	}
	if st, err := shim.Read(d.dir(id)); err == nil && st.Running {
		if err := d.kill(ctx, d.dir(id), st); err != nil {
			return err
		}
	}
	return d.teardown(ctx, id)
}

// teardown removes everything of id; each step tolerates missing pieces.
func (d *Driver) teardown(ctx context.Context, id string) error {
	var errs []error
	if d.cg != nil {
		errs = append(errs, d.cg.Open(id).Delete(ctx))
	}
	if d.opts.Network != nil {
		errs = append(errs, d.opts.Network.Detach(ctx, id))
	}
	if err := os.RemoveAll(d.dir(id)); err != nil {
		errs = append(errs, fmt.Errorf("process driver: %w", err))
	}
	return errors.Join(errs...)
}

func (d *Driver) dir(id string) string { return filepath.Join(d.opts.StateDir, id) }

// validID keeps handles from naming anything outside StateDir.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
