//go:build linux

package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/netns"
	"github.com/berth-dev/berth/internal/driver/shim"
)

// maxExecOutput bounds what Exec returns.
const maxExecOutput = 4096

// running loads id and checks that it runs.
func (d *Driver) running(id string) (record, *runtime, error) {
	r, err := d.load(id)
	if err != nil {
		return r, nil, err
	}
	if st, err := shim.Read(d.shimDir(id)); err != nil || !st.Running {
		return r, nil, fmt.Errorf("workload %s is not running", id)
	}
	rt, err := d.runtime(r.Runtime)
	return r, rt, err
}

// Exec implements driver.Driver: `<runtime> exec` with the container's
// own process settings (user, environment, capabilities, seccomp).
func (d *Driver) Exec(ctx context.Context, id string, cmd []string) (driver.ExecResult, error) {
	if len(cmd) == 0 {
		return driver.ExecResult{}, errors.New("exec: no command")
	}
	_, rt, err := d.running(id)
	if err != nil {
		return driver.ExecResult{}, err
	}
	argv := rt.argv(append([]string{"exec", id}, cmd...)...)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out limitedBuffer
	c.Stdout, c.Stderr = &out, &out
	err = c.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return driver.ExecResult{}, ctx.Err()
	case errors.As(err, &exit):
		return driver.ExecResult{ExitCode: exit.ExitCode(), Output: out.String()}, nil
	case err != nil:
		return driver.ExecResult{}, fmt.Errorf("exec: %w", err)
	}
	return driver.ExecResult{Output: out.String()}, nil
}

// limitedBuffer keeps the first maxExecOutput bytes written to it.
type limitedBuffer struct{ b []byte }

// Write keeps what fits and reports everything written.
func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxExecOutput - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// String returns what was kept.
func (l *limitedBuffer) String() string { return string(l.b) }

// DialInside implements driver.InsideDialer. Under runc and crun it dials
// 127.0.0.1:port inside the workload's network namespace. Under runsc the
// sandbox's own network stack owns that namespace, so it dials the
// workload's node-network address from the host instead (which needs a
// node network).
func (d *Driver) DialInside(ctx context.Context, id, network string, port int) (net.Conn, error) {
	r, _, err := d.running(id)
	if err != nil {
		return nil, err
	}
	if r.Runtime == Runsc {
		if !r.IP.IsValid() {
			return nil, fmt.Errorf("workload %s runs under runsc without a node network: it cannot be reached from outside its sandbox", id)
		}
		var dl net.Dialer
		return dl.DialContext(ctx, network, net.JoinHostPort(r.IP.String(), strconv.Itoa(port)))
	}
	b, err := os.ReadFile(filepath.Join(d.dir(id), pidFile))
	if err != nil {
		return nil, fmt.Errorf("workload %s: container pid: %w", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("workload %s: container pid: %w", id, err)
	}
	return netns.Dial(ctx, pid, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}
