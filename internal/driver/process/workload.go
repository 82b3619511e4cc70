//go:build linux

package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/netns"
	"github.com/berth-dev/berth/internal/driver/shim"
)

// taskFile is the driver's own record in a workload's directory.
const taskFile = "task.json"

// record is task.json: what a workload is, enough to list and restart it.
type record struct {
	ID         string               `json:"id"`
	InstanceID string               `json:"instance_id"`
	Labels     map[string]string    `json:"labels"`
	Ports      []driver.PortBinding `json:"ports,omitempty"`
	Limits     cgroups.Limits       `json:"limits"`
	// Spec is the shim spec without the per-launch NetNS and Cgroups.
	Spec      shim.Spec `json:"spec"`
	CreatedAt time.Time `json:"created_at"`
}

// save writes rec to its directory, creating it.
func (d *Driver) save(rec record) error {
	dir := d.dir(rec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("process driver: %w", err)
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+taskFile)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("process driver: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, taskFile)); err != nil {
		return fmt.Errorf("process driver: %w", err)
	}
	return nil
}

// load reads id's record, or driver.ErrNotFound.
func (d *Driver) load(id string) (record, error) {
	var rec record
	if !validID(id) {
		return rec, fmt.Errorf("%w: %q", driver.ErrNotFound, id)
	}
	b, err := os.ReadFile(filepath.Join(d.dir(id), taskFile))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("%w: %s", driver.ErrNotFound, id)
	}
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return rec, fmt.Errorf("process driver: workload %s: %w", id, err)
	}
	return rec, nil
}

// status combines the record with the shim's state and, with a node
// network, the attachment's address.
func (d *Driver) status(ctx context.Context, rec record) driver.Status {
	s := driver.Status{ID: rec.ID, InstanceID: rec.InstanceID, Labels: rec.Labels, State: driver.StateCreated}
	if d.opts.Network != nil {
		if att, ok, err := d.opts.Network.Get(ctx, rec.ID); err == nil && ok {
			s.IP = att.IP
		}
	}
	st, err := shim.Read(d.dir(rec.ID))
	if err != nil {
		return s // no shim yet: created, or a start that failed half-way
	}
	s.State = driver.StateExited
	if st.Running {
		s.State = driver.StateRunning
	}
	s.ExitCode, s.Error, s.StartedAt, s.FinishedAt = st.ExitCode, st.Error, st.StartedAt, st.FinishedAt
	return s
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	rec, err := d.load(id)
	if err != nil {
		return driver.Status{}, err
	}
	return d.status(ctx, rec), nil
}

// List implements driver.Driver: every workload directory under StateDir
// (of this node, when Options.Node is set).
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	entries, err := os.ReadDir(d.opts.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	var out []driver.Status
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rec, err := d.load(e.Name())
		if err != nil {
			continue // not a workload, or being removed
		}
		if rec.Labels[driver.LabelManaged] != "true" ||
			(d.opts.Node != "" && rec.Labels[driver.LabelNode] != d.opts.Node) {
			continue
		}
		out = append(out, d.status(ctx, rec))
	}
	return out, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	rec, err := d.load(id)
	if err != nil {
		return driver.Status{}, err
	}
	if _, err := shim.Wait(ctx, d.dir(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return d.status(ctx, rec), err
	}
	return d.status(ctx, rec), nil
}

// Logs implements driver.Driver.
func (d *Driver) Logs(ctx context.Context, id string, opts driver.LogOptions) (io.ReadCloser, error) {
	if _, err := d.load(id); err != nil {
		return nil, err
	}
	return shim.Logs(ctx, d.dir(id), opts)
}

// maxExecOutput is how much of an Exec's output is kept (the end of it).
const maxExecOutput = 4 << 10

// tailBuffer keeps the last maxExecOutput bytes written.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > maxExecOutput {
		t.b = append([]byte(nil), t.b[len(t.b)-maxExecOutput:]...)
	}
	return len(p), nil
}

// Exec implements driver.Driver: cmd runs with the workload's user,
// environment and working directory, in its network namespace and cgroup.
func (d *Driver) Exec(ctx context.Context, id string, cmd []string) (driver.ExecResult, error) {
	rec, err := d.load(id)
	if err != nil {
		return driver.ExecResult{}, err
	}
	if st, err := shim.Read(d.dir(id)); err != nil || !st.Running {
		return driver.ExecResult{}, fmt.Errorf("process driver: workload %s is not running", id)
	}
	spec := shim.Spec{Args: cmd, Env: rec.Spec.Env, Dir: rec.Spec.Dir, Credential: rec.Spec.Credential}
	if d.cg != nil {
		spec.Cgroups = d.cg.Open(id).Procs()
	}
	if spec.NetNS, err = d.netnsPath(ctx, id); err != nil {
		return driver.ExecResult{}, err
	}
	var out tailBuffer
	code, err := shim.Exec(ctx, spec, &out)
	if err != nil {
		return driver.ExecResult{}, fmt.Errorf("exec in %s: %w", id, err)
	}
	return driver.ExecResult{ExitCode: code, Output: string(out.b)}, nil
}

// netnsPath is the workload's network namespace, "" for the host's.
func (d *Driver) netnsPath(ctx context.Context, id string) (string, error) {
	if d.opts.Network == nil {
		return "", nil
	}
	att, ok, err := d.opts.Network.Get(ctx, id)
	if err != nil {
		return "", fmt.Errorf("process driver: network of %s: %w", id, err)
	}
	if !ok {
		return "", fmt.Errorf("process driver: workload %s has no network attachment", id)
	}
	return att.NetNS, nil
}

// DialInside implements driver.InsideDialer: it connects to port on the
// workload's loopback, inside its network namespace (on the host's
// loopback when the driver has no Network).
func (d *Driver) DialInside(ctx context.Context, id, network string, port int) (net.Conn, error) {
	if _, err := d.load(id); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	path, err := d.netnsPath(ctx, id)
	if err != nil {
		return nil, err
	}
	if path == "" {
		var dl net.Dialer
		return dl.DialContext(ctx, network, addr)
	}
	return netns.DialPath(ctx, path, network, addr)
}

var _ driver.InsideDialer = (*Driver)(nil)
