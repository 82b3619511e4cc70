//go:build linux

// Package cgroups creates and deletes one cgroup per workload, with CPU,
// memory (and swap) and pids limits, on cgroup v1 (including the hybrid
// layout, where the controllers live in v1 hierarchies) and on the unified
// v2 hierarchy. A workload's cgroup is <Parent>/<id> in every hierarchy
// used; processes join it by writing their pid to each file Procs returns.
package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is the cgroup layout of the node.
type Mode int

// Modes.
const (
	// ModeDetect asks New to detect the mode from Options.Root.
	ModeDetect Mode = iota
	// ModeV1 uses one v1 hierarchy per controller (legacy or hybrid).
	ModeV1
	// ModeV2 uses the unified hierarchy.
	ModeV2
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case ModeV1:
		return "v1"
	case ModeV2:
		return "v2"
	}
	return "detect"
}

// Options configure a Manager.
type Options struct {
	// Root is where cgroups are mounted; default /sys/fs/cgroup.
	Root string
	// Parent is the directory (relative to each hierarchy's root) workload
	// cgroups are created in; default "berth".
	Parent string
	// Mode overrides detection.
	Mode Mode
}

// Manager creates workload cgroups under one parent.
type Manager struct {
	root, parent string
	mode         Mode
}

// Detect returns the cgroup layout mounted at root: v2 when root is a
// cgroup2 mount, otherwise v1 (legacy or hybrid: the v2 mount at
// root/unified of the hybrid layout carries no controllers).
func Detect(root string) (Mode, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return ModeDetect, fmt.Errorf("cgroups: %s: %w", root, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return ModeV2, nil
	}
	if _, err := os.Stat(filepath.Join(root, "memory")); err != nil {
		return ModeDetect, fmt.Errorf("cgroups: %s is neither cgroup v2 nor a v1 layout with a memory hierarchy", root)
	}
	return ModeV1, nil
}

// New returns a manager, detecting the mode unless o.Mode sets it.
func New(o Options) (*Manager, error) {
	if o.Root == "" {
		o.Root = "/sys/fs/cgroup"
	}
	if o.Parent == "" {
		o.Parent = "berth"
	}
	if filepath.IsAbs(o.Parent) || strings.Contains(o.Parent, "..") {
		return nil, fmt.Errorf("cgroups: parent %q must be a relative path without ..", o.Parent)
	}
	if o.Mode == ModeDetect {
		m, err := Detect(o.Root)
		if err != nil {
			return nil, err
		}
		o.Mode = m
	}
	return &Manager{root: o.Root, parent: o.Parent, mode: o.Mode}, nil
}

// Mode is the layout the manager uses.
func (m *Manager) Mode() Mode { return m.mode }

// Cgroup is one workload's cgroup.
type Cgroup struct {
	m  *Manager
	id string
}

// dir is the cgroup's directory in the v1 hierarchy ctrl, or on v2
// (ctrl ignored).
func (c *Cgroup) dir(ctrl string) string {
	if c.m.mode == ModeV2 {
		return filepath.Join(c.m.root, c.m.parent, c.id)
	}
	return filepath.Join(c.m.root, ctrl, c.m.parent, c.id)
}

// dirs are all of the cgroup's directories.
func (c *Cgroup) dirs() []string {
	if c.m.mode == ModeV2 {
		return []string{c.dir("")}
	}
	var d []string
	for _, ctrl := range v1Controllers {
		d = append(d, c.dir(ctrl))
	}
	return d
}

// Open returns the cgroup of id without creating it (e.g. after a restart).
func (m *Manager) Open(id string) *Cgroup { return &Cgroup{m: m, id: id} }

// Create makes the cgroup of id with limits l. An existing cgroup of that
// id is reused and its limits rewritten. On error nothing is left behind.
func (m *Manager) Create(id string, l Limits) (*Cgroup, error) {
	if id == "" || strings.ContainsAny(id, "/") || id == "." || id == ".." {
		return nil, fmt.Errorf("cgroups: invalid id %q", id)
	}
	c := &Cgroup{m: m, id: id}
	err := c.create(l)
	if err != nil {
		_ = c.Delete(context.Background())
	}
	return c, err
}

func (c *Cgroup) create(l Limits) error {
	var settings []setting
	if c.m.mode == ModeV2 {
		if err := c.m.enableV2Controllers(); err != nil {
			return err
		}
		settings = v2Settings(l)
	} else {
		settings = v1Settings(l)
	}
	for _, d := range c.dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroups: create %s: %w", d, err)
		}
	}
	for _, s := range settings {
		p := filepath.Join(c.dir(s.Controller), s.File)
		if s.Optional {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				continue
			}
		}
		if err := os.WriteFile(p, []byte(s.Value), 0); err != nil {
			return fmt.Errorf("cgroups: set %s to %s: %w", p, s.Value, err)
		}
	}
	return nil
}

// enableV2Controllers enables cpu, memory and pids for the parent's
// children, from the root down.
func (m *Manager) enableV2Controllers() error {
	var want []string
	for _, c := range v2Controllers {
		want = append(want, "+"+c)
	}
	dir := m.root
	for _, part := range append([]string{""}, strings.Split(m.parent, "/")...) {
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		p := filepath.Join(dir, "cgroup.subtree_control")
		if err := os.WriteFile(p, []byte(strings.Join(want, " ")), 0); err != nil {
			return fmt.Errorf("cgroups: enable %s in %s: %w", strings.Join(v2Controllers, ", "), p, err)
		}
	}
	return nil
}

// ID is the workload id the cgroup was made for.
func (c *Cgroup) ID() string { return c.id }

// Procs returns the files a process writes its pid into to join the
// cgroup (one per v1 hierarchy; one on v2).
func (c *Cgroup) Procs() []string {
	var p []string
	for _, d := range c.dirs() {
		p = append(p, filepath.Join(d, "cgroup.procs"))
	}
	return p
}

// Exists reports whether the cgroup's directories exist.
func (c *Cgroup) Exists() bool {
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

// Pids lists the processes in the cgroup (none if it does not exist).
func (c *Cgroup) Pids() ([]int, error) {
	seen := map[int]bool{}
	var pids []int
	for _, p := range c.Procs() {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !seen[n] {
				seen[n] = true
				pids = append(pids, n)
			}
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the cgroup until it is empty or
// ctx ends.
func (c *Cgroup) Kill(ctx context.Context) error {
	if c.m.mode == ModeV2 {
		// cgroup.kill (Linux 5.14+) kills atomically, forks included.
		_ = os.WriteFile(filepath.Join(c.dir(""), "cgroup.kill"), []byte("1"), 0)
	}
	for {
		pids, err := c.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroups: %s still has processes %v: %w", c.id, pids, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Delete kills what is left in the cgroup and removes its directories.
// Deleting a missing cgroup is not an error.
func (c *Cgroup) Delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Kill(ctx); err != nil {
		return err
	}
	for _, d := range c.dirs() {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			// EBUSY while the last killed processes are being reaped.
			if !errors.Is(err, syscall.EBUSY) || ctx.Err() != nil {
				return fmt.Errorf("cgroups: remove %s: %w", d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// RemoveParent removes the manager's parent directories if they are empty
// (tests use it; a node keeps its parent).
func (m *Manager) RemoveParent() error {
	var dirs []string
	if m.mode == ModeV2 {
		dirs = []string{filepath.Join(m.root, m.parent)}
	} else {
		for _, ctrl := range v1Controllers {
			dirs = append(dirs, filepath.Join(m.root, ctrl, m.parent))
		}
	}
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("cgroups: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// Stats are cheap usage figures of a cgroup.
type Stats struct {
	// MemoryBytes is the memory currently charged to the cgroup.
	MemoryBytes int64
	// Pids is the number of processes in it.
	Pids int
}

// Stats reads the cgroup's current usage.
func (c *Cgroup) Stats() (Stats, error) {
	file := filepath.Join(c.dir("memory"), "memory.usage_in_bytes")
	if c.m.mode == ModeV2 {
		file = filepath.Join(c.dir(""), "memory.current")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroups: %w", err)
	}
	mem, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroups: %s: %w", file, err)
	}
	pids, err := c.Pids()
	return Stats{MemoryBytes: mem, Pids: len(pids)}, err
}
