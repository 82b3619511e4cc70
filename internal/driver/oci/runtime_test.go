//go:build linux

package oci

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/shim"
)

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// runToEnd starts task, waits for it to exit and returns its logs.
func runToEnd(t *testing.T, d *Driver, task driver.Task) (driver.Status, string) {
	t.Helper()
	ctx := testCtx(t)
	id, err := d.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	rc, err := d.Logs(ctx, id, driver.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return st, string(b)
}

func task(id string, script string) driver.Task {
	return driver.Task{InstanceID: id, Namespace: "default", App: "ocitest", Image: testImage,
		Command: []string{"sh", "-c", script}, Labels: testLabels}
}

// expectLines fails for every wanted line missing from out.
func expectLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.TrimSpace(l) == w
		}
		if !found {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestSecurityDefaults runs a workload under each runtime and checks from
// inside what it got: Docker's capabilities, no-new-privileges, the
// seccomp filter (user namespaces refused), masked and read-only /proc,
// hostname and /etc files, a read-only root with a tmpfs.
func TestSecurityDefaults(t *testing.T) {
	script := `grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status | tr -d '\t' | tr ':' ' '
grep -q '^Seccomp:.*2' /proc/self/status && echo seccomp-filter
unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied
echo host=$(hostname) env=$HOSTNAME
grep -q "$(hostname)\$" /etc/hosts && echo hosts-has-self
grep -q nameserver /etc/resolv.conf && echo resolv-ok
touch /rootfile 2>/dev/null && echo rootfs-rw || echo rootfs-ro
touch /scratch/f && echo tmpfs-rw
(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo procsys-rw || echo procsys-ro
echo masked=$(cat /proc/keys /proc/interrupts 2>/dev/null | wc -c)
echo cwd=$(pwd)`
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			tk := task(randomID(t), script)
			tk.ReadOnlyRootFS, tk.Tmpfs, tk.WorkingDir = true, []string{"/scratch"}, "/tmp"
			st, out := runToEnd(t, d, tk)
			if st.ExitCode != 0 {
				t.Fatalf("exit %d: %s", st.ExitCode, out)
			}
			caps := "00000000a80425fb" // Docker's default set
			if name == Runsc {
				caps = "00000000a80405fb" // gVisor drops CAP_NET_RAW unless run with --net-raw
			}
			expectLines(t, out, "CapEff "+caps, "CapBnd "+caps, "NoNewPrivs 1",
				"seccomp-filter", "userns-denied", "host="+tk.InstanceID+" env="+tk.InstanceID, "hosts-has-self",
				"resolv-ok", "rootfs-ro", "tmpfs-rw", "procsys-ro", "masked=0", "cwd=/tmp")
		})
	}
}

// TestUserFromImage: a user name resolves through the image's passwd and
// group files, a numeric one is taken as is.
func TestUserFromImage(t *testing.T) {
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			tk := task(randomID(t), "id")
			tk.User = "app"
			_, out := runToEnd(t, d, tk)
			if !strings.Contains(out, "uid=1000(app) gid=1000(app)") || !strings.Contains(out, "50(staff)") {
				t.Errorf("as app: %q", out)
			}
			tk = task(randomID(t), "id -u; id -g")
			tk.User = "4242:4343"
			_, out = runToEnd(t, d, tk)
			expectLines(t, out, "4242", "4343")
			tk = task(randomID(t), "true")
			tk.User = "nosuchuser"
			if _, err := d.Start(testCtx(t), tk); err == nil || !strings.Contains(err.Error(), "nosuchuser") {
				t.Errorf("Start as a missing user: %v", err)
			}
			if _, err := d.Inspect(testCtx(t), tk.InstanceID); !errors.Is(err, driver.ErrNotFound) {
				t.Errorf("a failed Start left the workload: %v", err)
			}
		})
	}
}

// TestCgroupLimits: the task's limits land in the cgroup /berth/<id>
// (checked on the host for runc and crun; runsc applies them to its
// sandbox's cgroup of the same path).
func TestCgroupLimits(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		t.Skip("checks cgroup v1 files; this host has cgroup v2 only")
	}
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			tk := task(randomID(t), "sleep 600")
			tk.CPUMilli, tk.MemoryBytes = 250, 48<<20
			id, err := d.Start(testCtx(t), tk)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"memory/berth/" + id + "/memory.limit_in_bytes": fmt.Sprint(48 << 20),
				"cpu/berth/" + id + "/cpu.cfs_quota_us":         "25000",
				"cpu/berth/" + id + "/cpu.cfs_period_us":        "100000",
				"pids/berth/" + id + "/pids.max":                "4096",
			}
			if swapAccounting() {
				want["memory/berth/"+id+"/memory.memsw.limit_in_bytes"] = fmt.Sprint(48 << 20)
			}
			for file, want := range want {
				b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", file))
				if err != nil || strings.TrimSpace(string(b)) != want {
					t.Errorf("%s = %q, %v; want %s", file, b, err, want)
				}
			}
			if err := d.Remove(testCtx(t), id); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat("/sys/fs/cgroup/memory/berth/" + id); !os.IsNotExist(err) {
				t.Errorf("cgroup left after Remove: %v", err)
			}
		})
	}
}

// TestReattach: a second driver over the same state dir (the agent after
// a restart) sees a running workload and stops it.
func TestReattach(t *testing.T) {
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			id, err := d.Start(testCtx(t), task(randomID(t), "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"))
			if err != nil {
				t.Fatal(err)
			}
			waitLog(t, d, id, "ready")
			d2, err := New(d.o)
			if err != nil {
				t.Fatal(err)
			}
			st, err := d2.Inspect(testCtx(t), id)
			if err != nil || st.State != driver.StateRunning || st.Labels["berth.test"] != "1" {
				t.Fatalf("second driver: %+v %v", st, err)
			}
			if err := d2.Stop(testCtx(t), id, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if st, _ := d.Inspect(testCtx(t), id); st.State != driver.StateExited || st.ExitCode != 0 {
				t.Fatalf("after stop via the second driver: %+v", st)
			}
		})
	}
}

func TestRuntimeSelection(t *testing.T) {
	requireRuntime(t, Runc)
	d, err := New(Options{StateDir: tempDir(t), RootFS: newBusyboxProvider(t),
		Runtimes: map[string]string{Runc: "runc", Crun: "/nonexistent/crun"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Runtimes(); len(got) != 1 || got[0] != Runc {
		t.Fatalf("Runtimes() = %v, want only the installed runc", got)
	}
	if err := d.Available(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	tk := task(randomID(t), "true")
	tk.Runtime = Crun
	if _, err := d.Start(testCtx(t), tk); err == nil || err.Error() != "runtime crun is not installed on this node" {
		t.Fatalf("Start under a missing runtime: %v", err)
	}
	tk.Runtime = "sandbox"
	if _, err := d.Start(testCtx(t), tk); err == nil || err.Error() != "runtime runsc is not installed on this node" {
		t.Fatalf("Start under sandbox (runsc) where it is missing: %v", err)
	}
	tk.Runtime = "kata"
	if _, err := d.Start(testCtx(t), tk); err == nil || !strings.Contains(err.Error(), `unknown runtime "kata"`) {
		t.Fatalf("Start under an unknown runtime: %v", err)
	}
	tk.Runtime = ""
	tk.Ports = []driver.PortBinding{{ContainerPort: 80, HostPort: 8080, Protocol: "tcp"}}
	if _, err := d.Start(testCtx(t), tk); err == nil || !strings.Contains(err.Error(), "no node network") {
		t.Fatalf("Start with ports and no network: %v", err)
	}
	if list, _ := d.List(testCtx(t)); len(list) != 0 {
		t.Fatalf("failed starts left %v", list)
	}
	only, _ := New(Options{StateDir: tempDir(t), RootFS: newBusyboxProvider(t), Runtimes: map[string]string{Crun: requireRuntime(t, Crun)}})
	if only.DefaultRuntime() != Crun || only.Available(testCtx(t)) != nil {
		t.Fatalf("with only crun installed the default is %s", only.DefaultRuntime())
	}
	pinned, _ := New(Options{StateDir: tempDir(t), RootFS: newBusyboxProvider(t), Runtimes: map[string]string{Crun: requireRuntime(t, Crun)},
		DefaultRuntime: Runc})
	if err := pinned.Available(testCtx(t)); err == nil || !strings.Contains(err.Error(), "runc is not installed") {
		t.Fatalf("Available with the configured default missing: %v", err)
	}
	empty, _ := New(Options{StateDir: tempDir(t), RootFS: newBusyboxProvider(t), Runtimes: map[string]string{}})
	if err := empty.Available(testCtx(t)); err == nil {
		t.Fatal("Available with no runtime installed")
	}
}

// TestStartFailureLeavesNothing: the runtime's own refusal (a command
// missing from the image) comes back from Start, and nothing remains.
func TestStartFailureLeavesNothing(t *testing.T) {
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			tk := task(randomID(t), "")
			tk.Command = []string{"/no/such/binary"}
			_, err := d.Start(testCtx(t), tk)
			if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
				t.Fatalf("Start = %v, want the runtime's message naming the binary", err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if _, serr := os.Stat(d.dir(tk.InstanceID)); !os.IsNotExist(serr) {
				t.Errorf("workload dir left behind: %v", serr)
			}
			if _, serr := os.Stat("/sys/fs/cgroup/memory/berth/" + tk.InstanceID); !os.IsNotExist(serr) {
				t.Errorf("cgroup left behind: %v", serr)
			}
		})
	}
}

// waitLog waits until the workload's log has line.
func waitLog(t *testing.T, d *Driver, id, line string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := d.Logs(ctx, id, driver.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		if sc.Text() == line {
			return
		}
	}
	t.Fatalf("workload %s never logged %q", id, line)
}

func randomID(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// TestShimDied: when a workload's shim is killed, the workload reads as
// exited ("shim died") and Stop ends the container the runtime still
// runs, unsupervised.
func TestShimDied(t *testing.T) {
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			id, err := d.Start(testCtx(t), task(randomID(t), "sleep 600"))
			if err != nil {
				t.Fatal(err)
			}
			st, err := shim.Read(d.shimDir(id))
			if err != nil || !st.Running {
				t.Fatalf("shim state %+v %v", st, err)
			}
			if err := syscall.Kill(st.ShimPID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			ins, err := d.Wait(testCtx(t), id)
			if err != nil || ins.State != driver.StateExited || ins.Error != shim.ErrShimDied {
				t.Fatalf("after the shim died: %+v %v", ins, err)
			}
			rt, _ := d.runtime(name)
			if cs, err := rt.state(testCtx(t), id); err != nil || cs.Status != "running" {
				t.Fatalf("the container should outlive its shim: %+v %v", cs, err)
			}
			if err := d.Stop(testCtx(t), id, time.Second); err != nil {
				t.Fatal(err)
			}
			if cs, err := rt.state(testCtx(t), id); err != errNoContainer {
				t.Fatalf("container after Stop: %+v %v", cs, err)
			}
		})
	}
}
