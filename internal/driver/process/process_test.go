//go:build linux

package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
	"github.com/berth-dev/berth/internal/driver/shim"
	"github.com/berth-dev/berth/internal/network"
)

const busybox = "/bin/busybox"

func TestMain(m *testing.M) {
	shim.MaybeRun()
	os.Exit(m.Run())
}

// programs expresses drivertest's programs with the host's busybox;
// ServeHTTP serves from www.
func programs(www string) map[drivertest.Program][]string {
	p := map[drivertest.Program][]string{}
	for prog, cmd := range drivertest.ShellPrograms {
		p[prog] = append([]string{busybox}, cmd...)
	}
	p[drivertest.ServeHTTP] = []string{busybox, "sh", "-c",
		fmt.Sprintf("echo served > %s/index.html && exec %s httpd -f -p 8080 -h %s", www, busybox, www)}
	return p
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// require fails under CI=true, skips otherwise.
func require(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// testOptions are driver options with a berth-test-* state dir and cgroup
// parent, both removed at cleanup (after every workload in them).
func testOptions(t *testing.T, nw network.Node) Options {
	t.Helper()
	require(t, os.Geteuid() == 0, "the process driver needs root")
	dir, err := os.MkdirTemp("", "berth-test-process-*")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{StateDir: filepath.Join(dir, "state"), Node: "berth-test-node", Network: nw,
		Cgroups: cgroups.Options{Parent: "berth-test-proc-" + randHex(4)}}
	t.Cleanup(func() {
		d := New(o)
		ents, _ := os.ReadDir(o.StateDir)
		for _, e := range ents {
			if err := d.Remove(context.Background(), e.Name()); err != nil {
				t.Errorf("cleanup: remove %s: %v", e.Name(), err)
			}
		}
		if d.cg != nil {
			if err := d.cg.RemoveParent(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		os.RemoveAll(dir)
	})
	return o
}

func newDriver(t *testing.T, o Options) *Driver {
	t.Helper()
	d := New(o)
	require(t, d.Available(context.Background()) == nil, "process driver unavailable: %v", d.Available(context.Background()))
	return d
}

func TestConformanceHostNetwork(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	drivertest.Run(t, drivertest.Harness{
		New:      func(*testing.T) driver.Driver { return d },
		Image:    HostImage,
		Programs: programs(testDir(t)),
		Labels:   map[string]string{"berth.test": "1"},
		FreePort: drivertest.FreeTCPPort,
		Caps:     drivertest.Capabilities{Exec: true},
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func task(cmd ...string) driver.Task {
	return driver.Task{InstanceID: "berth-test-" + randHex(4), Namespace: "default", App: "proc", Revision: 1,
		Command: cmd, Labels: map[string]string{"berth.test": "1"}}
}

func start(t *testing.T, d *Driver, tk driver.Task) string {
	t.Helper()
	id, err := d.Start(ctx(t), tk)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id // testOptions' cleanup removes it
}

func logs(t *testing.T, d *Driver, id string) string {
	t.Helper()
	rc, err := d.Logs(ctx(t), id, driver.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func TestRefusals(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	for name, tk := range map[string]driver.Task{
		"image":      func() driver.Task { k := task(busybox, "true"); k.Image = "busybox:1"; return k }(),
		"no command": task(),
		"ports, no net": func() driver.Task {
			k := task(busybox, "true")
			k.Ports = []driver.PortBinding{{ContainerPort: 80, HostPort: 1, Protocol: "tcp"}}
			return k
		}(),
		"read-only rootfs": func() driver.Task { k := task(busybox, "true"); k.ReadOnlyRootFS = true; return k }(),
		"unknown user":     func() driver.Task { k := task(busybox, "true"); k.User = "berth-test-nosuchuser"; return k }(),
		"missing binary":   task("berth-test-nosuch"),
	} {
		if id, err := d.Start(ctx(t), tk); err == nil {
			t.Errorf("%s: Start succeeded (%s)", name, id)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if list, _ := d.List(ctx(t)); len(list) != 0 {
		t.Fatalf("refused starts left workloads: %+v", list)
	}
}

func TestUserWorkdirEnv(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	wd := testDir(t)
	for _, tc := range []struct{ user, want string }{
		{"65534:65533", "65534 65533"},
		{"nobody", "65534 65534"},
		{"", "0 0"},
	} {
		tk := task(busybox, "sh", "-c", `echo "$(id -u) $(id -g)"; pwd; echo "$PATH"`)
		tk.User, tk.WorkingDir = tc.user, wd
		id := start(t, d, tk)
		if st, err := d.Wait(ctx(t), id); err != nil || st.ExitCode != 0 {
			t.Fatalf("user %q: %+v %v", tc.user, st, err)
		}
		if got, want := logs(t, d, id), tc.want+"\n"+wd+"\n"+defaultPath+"\n"; got != want {
			t.Errorf("user %q: logs %q, want %q", tc.user, got, want)
		}
	}
}

// pidOf is the workload's main pid from its shim state.
func pidOf(t *testing.T, d *Driver, id string) int {
	t.Helper()
	st, err := shim.Read(d.dir(id))
	if err != nil || !st.Running {
		t.Fatalf("shim state %+v %v", st, err)
	}
	return st.PID
}

func TestLimitsAndCgroup(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	tk := task(busybox, "sleep", "600")
	tk.CPUMilli, tk.MemoryBytes = 250, 48<<20
	id := start(t, d, tk)
	pid := pidOf(t, d, id)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	cg := d.cg.Open(id)
	if pids, _ := cg.Pids(); !slices.Contains(pids, pid) {
		t.Fatalf("workload %d not in its cgroup (%v); /proc/pid/cgroup:\n%s", pid, pids, b)
	}
	if d.cg.Mode() == cgroups.ModeV1 {
		for file, want := range map[string]string{
			"cpu/" + d.opts.Cgroups.Parent + "/" + id + "/cpu.cfs_quota_us":         "25000",
			"memory/" + d.opts.Cgroups.Parent + "/" + id + "/memory.limit_in_bytes": fmt.Sprint(48 << 20),
			"pids/" + d.opts.Cgroups.Parent + "/" + id + "/pids.max":                "4096",
		} {
			got, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", file))
			if err != nil || strings.TrimSpace(string(got)) != want {
				t.Errorf("%s = %q %v, want %s", file, got, err, want)
			}
		}
	}
	if err := d.Remove(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if cg.Exists() {
		t.Fatal("cgroup left after Remove")
	}
	if _, err := os.Stat(d.dir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("workload dir left after Remove: %v", err)
	}
}

// TestStopKillsLeftovers: a background process that outlived the main
// one (in its own session, so not in its process group) dies on Stop.
func TestStopKillsLeftovers(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	id := start(t, d, task(busybox, "sh", "-c", busybox+" setsid "+busybox+" sleep 600 >/dev/null 2>&1 & echo started"))
	st, err := d.Wait(ctx(t), id)
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("Wait %+v %v", st, err)
	}
	cg := d.cg.Open(id)
	if pids, _ := cg.Pids(); len(pids) != 1 {
		t.Fatalf("want the orphaned sleep left in the cgroup, have %v", pids)
	}
	if err := d.Stop(ctx(t), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if pids, _ := cg.Pids(); len(pids) != 0 {
		t.Fatalf("processes left after Stop: %v", pids)
	}
}

// TestReattach: a second driver over the same state dir (an agent restart)
// sees, stops and removes the first one's workload.
func TestReattach(t *testing.T) {
	o := testOptions(t, nil)
	d1 := newDriver(t, o)
	tk := task(busybox, "sh", "-c", "echo hello; exec sleep 600")
	id := start(t, d1, tk)
	d2 := newDriver(t, o)
	st, err := d2.Inspect(ctx(t), id)
	if err != nil || st.State != driver.StateRunning || st.InstanceID != tk.InstanceID || st.Labels[driver.LabelNode] != "berth-test-node" {
		t.Fatalf("Inspect from a new driver: %+v %v", st, err)
	}
	list, _ := d2.List(ctx(t))
	if len(list) != 1 || list[0].ID != id {
		t.Fatalf("List from a new driver: %+v", list)
	}
	other := o
	other.Node = "berth-test-other-node"
	if list, _ := New(other).List(ctx(t)); len(list) != 0 {
		t.Fatalf("another node's driver lists %+v", list)
	}
	// The shell has printed before it is stopped (on a loaded machine
	// the stop could otherwise beat its echo).
	for deadline := time.Now().Add(10 * time.Second); logs(t, d2, id) != "hello\n" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	waited := make(chan driver.Status, 1)
	go func() { st, _ := d2.Wait(ctx(t), id); waited <- st }()
	if err := d2.Stop(ctx(t), id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := <-waited; st.State != driver.StateExited || st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("after Stop: %+v", st)
	}
	if got := logs(t, d2, id); got != "hello\n" {
		t.Fatalf("logs %q", got)
	}
	if err := d2.Remove(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Inspect(ctx(t), id); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("first driver after Remove: %v", err)
	}
}

// TestShimDiedThenStop: the workload outlives a killed shim; it is
// reported exited ("shim died") and Stop kills it through its cgroup.
func TestShimDiedThenStop(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	id := start(t, d, task(busybox, "sleep", "600"))
	st, _ := shim.Read(d.dir(id))
	if err := syscall.Kill(st.ShimPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got, err := d.Wait(ctx(t), id)
	if err != nil || got.State != driver.StateExited || got.Error != shim.ErrShimDied {
		t.Fatalf("after the shim died: %+v %v", got, err)
	}
	if err := d.Stop(ctx(t), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if pids, _ := d.cg.Open(id).Pids(); len(pids) != 0 {
		t.Fatalf("workload survived Stop: %v", pids)
	}
	// Restart brings it back under a new shim.
	if err := d.Restart(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Inspect(ctx(t), id); st.State != driver.StateRunning {
		t.Fatalf("after Restart: %+v", st)
	}
}

// TestMemoryLimitKills: a workload that allocates past its memory limit
// (no swap to escape into) is OOM-killed.
func TestMemoryLimitKills(t *testing.T) {
	d := newDriver(t, testOptions(t, nil))
	tk := task(busybox, "sh", "-c", `x=$(`+busybox+` head -c 200000000 /dev/zero | `+busybox+` tr '\0' a); echo survived ${#x}`)
	tk.MemoryBytes = 32 << 20
	id := start(t, d, tk)
	st, err := d.Wait(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 137 || strings.Contains(logs(t, d, id), "survived") {
		t.Fatalf("over the memory limit: %+v, logs %q", st, logs(t, d, id))
	}
}

// testDir is a berth-test-* temp dir removed at cleanup.
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
