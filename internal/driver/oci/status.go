//go:build linux

package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/shim"
)

// Files and directories inside a workload directory.
const (
	recordFile = "task.json"
	bundleDir  = "bundle"
	shimDir    = "shim"
	pidFile    = "container.pid"
	// runtimeDir under StateDir holds each runtime's --root.
	runtimeDir = "runtime"
)

// record is task.json: what the driver knows about a workload beyond the
// shim's state.
type record struct {
	ID      string      `json:"id"`
	Task    driver.Task `json:"task"`
	Runtime string      `json:"runtime"`
	// Labels are the workload's labels (task labels plus berth's own).
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"createdAt"`
	// NetNS and IP come from the network attachment, if any.
	NetNS string     `json:"netns,omitempty"`
	IP    netip.Addr `json:"ip,omitzero"`
}

// validID matches the IDs every runtime accepts as a container ID.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// checkID refuses IDs that are not a safe container ID and directory
// name.
func checkID(id string) error {
	if !validID.MatchString(id) || id == runtimeDir {
		return fmt.Errorf("instance ID %q is not usable as a container ID (letters, digits, _ . + -; at most 128)", id)
	}
	return nil
}

func (d *Driver) dir(id string) string { return filepath.Join(d.o.StateDir, id) }

func (d *Driver) shimDir(id string) string { return filepath.Join(d.o.StateDir, id, shimDir) }

// load reads id's record, or driver.ErrNotFound.
func (d *Driver) load(id string) (record, error) {
	if checkID(id) != nil {
		return record{}, driver.ErrNotFound
	}
	b, err := os.ReadFile(filepath.Join(d.dir(id), recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, driver.ErrNotFound
	}
	if err != nil {
		return record{}, fmt.Errorf("oci: read %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("oci: corrupt %s: %w", filepath.Join(d.dir(id), recordFile), err)
	}
	return r, nil
}

// save writes id's record atomically.
func (d *Driver) save(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(d.dir(r.ID), recordFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("oci: write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("oci: write %s: %w", p, err)
	}
	return nil
}

// status combines a record with the shim's state.
func (d *Driver) status(r record) (driver.Status, error) {
	st := driver.Status{ID: r.ID, InstanceID: r.Labels[driver.LabelInstance], Labels: r.Labels, State: driver.StateCreated, IP: r.IP}
	s, err := shim.Read(d.shimDir(r.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("oci: %w", err)
	}
	st.State = driver.StateExited
	if s.Running {
		st.State = driver.StateRunning
	}
	st.ExitCode, st.Error, st.StartedAt, st.FinishedAt = s.ExitCode, s.Error, s.StartedAt, s.FinishedAt
	return st, nil
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	r, err := d.load(id)
	if err != nil {
		return driver.Status{}, err
	}
	return d.status(r)
}

// List implements driver.Driver: every workload directory in StateDir
// (of this node, when Options.Node is set).
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	entries, err := os.ReadDir(d.o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("oci: list: %w", err)
	}
	out := []driver.Status{}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == runtimeDir {
			continue
		}
		r, err := d.load(e.Name())
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.Labels[driver.LabelManaged] != "true" || (d.o.Node != "" && r.Labels[driver.LabelNode] != d.o.Node) {
			continue
		}
		st, err := d.status(r)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	r, err := d.load(id)
	if err != nil {
		return driver.Status{}, err
	}
	if _, err := shim.Wait(ctx, d.shimDir(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if ctx.Err() != nil {
			return driver.Status{}, ctx.Err()
		}
		return driver.Status{}, fmt.Errorf("oci: wait: %w", err)
	}
	return d.status(r)
}

// Logs implements driver.Driver: the runtime's stdout and stderr, which
// are the workload's (and the runtime's own messages).
func (d *Driver) Logs(ctx context.Context, id string, o driver.LogOptions) (io.ReadCloser, error) {
	if _, err := d.load(id); err != nil {
		return nil, err
	}
	rc, err := shim.Logs(ctx, d.shimDir(id), o)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(new(emptyReader)), nil
	}
	return rc, err
}

// emptyReader is an empty log.
type emptyReader struct{}

// Read reports EOF.
func (*emptyReader) Read([]byte) (int, error) { return 0, io.EOF }
