// Package mock is an in-memory driver: workloads are goroutines that run a
// tiny step language instead of processes. It has the real lifecycle
// (SIGTERM with trap/ignore, kill after grace, exit codes, restart in
// place, logs with follow) so the agent and controllers can be tested, and
// clusters simulated, without a container runtime. It passes drivertest
// for the abilities it declares.
//
// A task's Command (then Args) is a list of steps separated by ";":
//
//	print TEXT     write TEXT ($VAR expanded from Env) to stdout
//	stderr TEXT    write TEXT to stderr
//	sleep DURATION wait (Go duration)
//	trap-term      from now on SIGTERM prints "got-term" and exits 0
//	ignore-term    from now on SIGTERM is ignored
//	run            wait until signalled
//	exit CODE      exit with CODE
//
// With no command the workload runs until stopped. SIGTERM without a trap
// exits 143; a kill exits 137. Images must be listed in Options.Images;
// any other image fails like a pull that cannot find it.
package mock

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/driver"
)

// Options configure the mock driver.
type Options struct {
	// Node is set as the berth.node label; List returns only its workloads.
	Node string
	// Images the mock "has"; Start fails for any other.
	Images []string
	// StartDelay is how long Start takes (an image pull, say).
	StartDelay time.Duration
}

// Driver implements driver.Driver in memory.
type Driver struct {
	opts Options
	mu   sync.Mutex
	ws   map[string]*workload
	seq  int
}

// New makes a mock driver.
func New(o Options) *Driver { return &Driver{opts: o, ws: map[string]*workload{}} }

// mockBase is where workload addresses come from: 198.18.0.0/15, the
// benchmarking range, so they are never mistaken for real ones.
var mockBase = netip.MustParseAddr("198.18.0.0")

// mockIP is the address of the seq'th workload.
func mockIP(seq int) netip.Addr {
	b := mockBase.As4()
	b[2], b[3] = byte(seq>>8), byte(seq)
	return netip.AddrFrom4(b)
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "mock" }

// Available implements driver.Driver.
func (d *Driver) Available(context.Context) error { return nil }

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, t driver.Task) (string, error) {
	if !ctxsleep.Sleep(ctx, d.opts.StartDelay) {
		return "", ctx.Err()
	}
	if !slices.Contains(d.opts.Images, t.Image) {
		return "", fmt.Errorf("pull %s: image not found in the mock registry", t.Image)
	}
	steps, err := parse(append(append([]string(nil), t.Command...), t.Args...))
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	id := fmt.Sprintf("mock-%06d-%s", d.seq, t.InstanceID)
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	labels[driver.LabelManaged] = "true"
	labels[driver.LabelInstance] = t.InstanceID
	labels[driver.LabelApp] = t.App
	labels[driver.LabelNamespace] = t.Namespace
	labels[driver.LabelRevision] = strconv.FormatInt(t.Revision, 10)
	if d.opts.Node != "" {
		labels[driver.LabelNode] = d.opts.Node
	}
	w := &workload{id: id, instance: t.InstanceID, labels: labels, env: t.Env, steps: steps, logs: newLogBuffer(),
		ip: mockIP(d.seq)}
	d.ws[id] = w
	w.start()
	return id, nil
}

func (d *Driver) get(id string) (*workload, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.ws[id]
	if !ok {
		return nil, driver.ErrNotFound
	}
	return w, nil
}

// Restart implements driver.Driver.
func (d *Driver) Restart(_ context.Context, id string) error {
	w, err := d.get(id)
	if err != nil {
		return err
	}
	w.start()
	return nil
}

// Stop implements driver.Driver.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	w, err := d.get(id)
	if err != nil {
		return err
	}
	w.stop(ctx, grace)
	return nil
}

// Remove implements driver.Driver.
func (d *Driver) Remove(ctx context.Context, id string) error {
	w, err := d.get(id)
	if err != nil {
		return nil
	}
	w.stop(ctx, 0)
	d.mu.Lock()
	delete(d.ws, id)
	d.mu.Unlock()
	return nil
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(_ context.Context, id string) (driver.Status, error) {
	w, err := d.get(id)
	if err != nil {
		return driver.Status{}, err
	}
	return w.status(), nil
}

// List implements driver.Driver.
func (d *Driver) List(context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	ws := make([]*workload, 0, len(d.ws))
	for _, w := range d.ws {
		ws = append(ws, w)
	}
	d.mu.Unlock()
	var out []driver.Status
	for _, w := range ws {
		if d.opts.Node == "" || w.labels[driver.LabelNode] == d.opts.Node {
			out = append(out, w.status())
		}
	}
	return out, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	w, err := d.get(id)
	if err != nil {
		return driver.Status{}, err
	}
	select {
	case <-w.exited():
		return w.status(), nil
	case <-ctx.Done():
		return driver.Status{}, ctx.Err()
	}
}

// Logs implements driver.Driver.
func (d *Driver) Logs(ctx context.Context, id string, o driver.LogOptions) (io.ReadCloser, error) {
	w, err := d.get(id)
	if err != nil {
		return nil, err
	}
	return w.logs.reader(ctx, o, w.exited), nil
}

// Exec implements driver.Driver for the commands "true" (exit 0) and
// "false" (exit 1); anything else is "not found" (127).
func (d *Driver) Exec(_ context.Context, id string, cmd []string) (driver.ExecResult, error) {
	w, err := d.get(id)
	if err != nil {
		return driver.ExecResult{}, err
	}
	if w.status().State != driver.StateRunning {
		return driver.ExecResult{}, fmt.Errorf("workload %s is not running", id)
	}
	switch {
	case len(cmd) == 1 && cmd[0] == "true":
		return driver.ExecResult{}, nil
	case len(cmd) == 1 && cmd[0] == "false":
		return driver.ExecResult{ExitCode: 1}, nil
	}
	return driver.ExecResult{ExitCode: 127, Output: strings.Join(cmd, " ") + ": not found in the mock driver"}, nil
}

var _ driver.Driver = (*Driver)(nil)

// step is one parsed instruction.
type step struct {
	verb string
	arg  string
	d    time.Duration
	code int
}

func parse(tokens []string) ([]step, error) {
	var steps []step
	var cur []string
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		st := step{verb: cur[0], arg: strings.Join(cur[1:], " ")}
		var err error
		switch st.verb {
		case "print", "stderr", "trap-term", "ignore-term", "run":
		case "sleep":
			st.d, err = time.ParseDuration(st.arg)
		case "exit":
			st.code, err = strconv.Atoi(st.arg)
		default:
			err = fmt.Errorf("unknown step %q", st.verb)
		}
		if err != nil {
			return fmt.Errorf("mock command %q: %v", strings.Join(cur, " "), err)
		}
		steps = append(steps, st)
		cur = nil
		return nil
	}
	for _, tok := range tokens {
		if tok == ";" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, tok)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		steps = []step{{verb: "run"}}
	}
	return steps, nil
}

func expand(s string, env map[string]string) string {
	return os.Expand(s, func(k string) string { return env[k] })
}
