//go:build linux

package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver"
)

const busybox = "/bin/busybox"

// envLauncher makes the test binary a short-lived caller that launches a
// shim and exits, to test reading a shim one did not start.
const envLauncher = "BERTH_TEST_SHIM_LAUNCHER"

func TestMain(m *testing.M) {
	MaybeRun()
	if dir := os.Getenv(envLauncher); dir != "" {
		st, err := Launch(dir, Spec{Args: []string{busybox, "sh", "-c", "echo launched; sleep 600"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(st)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// tempDir is a shim dir whose workload and shim are killed at cleanup.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-shim-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(filepath.Join(dir, stateFile))
		var rec record
		if err == nil && json.Unmarshal(b, &rec) == nil {
			if rec.PID > 0 && Alive(rec.PID) {
				_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
			}
			if alive(rec.ShimPID, rec.ShimStart) {
				_ = syscall.Kill(rec.ShimPID, syscall.SIGKILL)
			}
			for i := 0; i < 100 && (Alive(rec.PID) || alive(rec.ShimPID, rec.ShimStart)); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		os.RemoveAll(dir)
	})
	return dir
}

func sh(script string) Spec { return Spec{Args: []string{busybox, "sh", "-c", script}} }

func launch(t *testing.T, dir string, spec Spec) State {
	t.Helper()
	st, err := Launch(dir, spec)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if st.PID <= 0 || st.ShimPID <= 0 || st.StartedAt.IsZero() {
		t.Fatalf("Launch state %+v", st)
	}
	return st
}

func wait(t *testing.T, dir string) State {
	t.Helper()
	st, err := Wait(ctx(t), dir)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Running {
		t.Fatalf("Wait returned running: %+v", st)
	}
	return st
}

func logs(t *testing.T, dir string, opts driver.LogOptions) string {
	t.Helper()
	rc, err := Logs(ctx(t), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExitCodes(t *testing.T) {
	for _, code := range []int{0, 3, 42} {
		dir := tempDir(t)
		launch(t, dir, sh(fmt.Sprintf("exit %d", code)))
		st := wait(t, dir)
		if st.ExitCode != code || st.FinishedAt.IsZero() || st.Error != "" {
			t.Errorf("exit %d: state %+v", code, st)
		}
	}
}

func TestKilledBySignal(t *testing.T) {
	dir := tempDir(t)
	st := launch(t, dir, sh("sleep 600"))
	if err := syscall.Kill(-st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, dir); st.ExitCode != 137 {
		t.Fatalf("killed: %+v, want 137", st)
	}
}

func TestEnvDirAndPathLookup(t *testing.T) {
	dir := tempDir(t)
	work := testDir(t)
	launch(t, dir, Spec{Args: []string{"busybox", "sh", "-c", `echo "g=$GREETING"; pwd; echo err >&2`},
		Env: []string{"PATH=/bin", "GREETING=hi"}, Dir: work})
	if st := wait(t, dir); st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
	if got, want := logs(t, dir, driver.LogOptions{}), "g=hi\n"+work+"\nerr\n"; got != want {
		t.Fatalf("logs %q, want %q", got, want)
	}
}

func TestCredential(t *testing.T) {
	dir := tempDir(t)
	spec := sh("id -u; id -g; id -G")
	spec.Credential = &Credential{UID: 65534, GID: 65533, Groups: []uint32{65532}}
	launch(t, dir, spec)
	wait(t, dir)
	if got := logs(t, dir, driver.LogOptions{}); got != "65534\n65533\n65533 65532\n" {
		t.Fatalf("ids %q", got)
	}
}

func TestBadExecutable(t *testing.T) {
	dir := tempDir(t)
	_, err := Launch(dir, Spec{Args: []string{"nosuch-berth-test"}, Env: []string{"PATH=/bin"}})
	if err == nil || !strings.Contains(err.Error(), `exec: "nosuch-berth-test": executable file not found`) {
		t.Fatalf("Launch error %v", err)
	}
	st, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Error == "" || Alive(st.ShimPID) {
		t.Fatalf("after a failed launch: %+v", st)
	}
	if _, err := Launch(tempDir(t), Spec{Args: []string{"/etc/passwd"}}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("non-executable: %v", err)
	}
	if _, err := Launch(tempDir(t), Spec{Args: []string{busybox, "true"}, Dir: "/nonexistent-berth-test"}); err == nil ||
		!strings.Contains(err.Error(), "working directory") {
		t.Fatalf("bad dir: %v", err)
	}
}

func TestReadMissing(t *testing.T) {
	if _, err := Read(filepath.Join(testDir(t), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Read missing: %v", err)
	}
	if _, err := Logs(ctx(t), filepath.Join(testDir(t), "nope"), driver.LogOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Logs missing: %v", err)
	}
}

func TestRestartAppendsLogs(t *testing.T) {
	dir := tempDir(t)
	first := launch(t, dir, sh("echo run; exit 1"))
	wait(t, dir)
	second := launch(t, dir, sh("echo run; exit 2"))
	st := wait(t, dir)
	if st.ExitCode != 2 || second.PID == first.PID {
		t.Fatalf("restart state %+v", st)
	}
	if got := logs(t, dir, driver.LogOptions{}); got != "run\nrun\n" {
		t.Fatalf("logs after restart %q", got)
	}
	if _, err := Launch(dir, Spec{}); err == nil {
		t.Fatal("Launch without args succeeded")
	}
}

func TestLaunchWhileRunningIsRefused(t *testing.T) {
	dir := tempDir(t)
	launch(t, dir, sh("sleep 600"))
	if _, err := Launch(dir, sh("true")); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("second Launch: %v", err)
	}
}

func TestRotationAndTail(t *testing.T) {
	dir := tempDir(t)
	spec := sh(`i=1; while [ $i -le 200 ]; do echo "line $i"; i=$((i+1)); done`)
	spec.LogMaxBytes, spec.LogMaxFiles = 1024, 2
	launch(t, dir, spec)
	wait(t, dir)
	files := logFiles(dir)
	if len(files) != 3 {
		t.Fatalf("log files %v, want log.2 log.1 log", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 1024 {
			t.Fatalf("%s: %v size %d", f, err, fi.Size())
		}
	}
	all := strings.Split(strings.TrimSuffix(logs(t, dir, driver.LogOptions{}), "\n"), "\n")
	if all[len(all)-1] != "line 200" || len(all) >= 200 {
		t.Fatalf("kept %d lines ending %q", len(all), all[len(all)-1])
	}
	for i := 1; i < len(all); i++ { // contiguous across rotated files
		var a, b int
		fmt.Sscanf(all[i-1], "line %d", &a)
		fmt.Sscanf(all[i], "line %d", &b)
		if b != a+1 {
			t.Fatalf("gap between %q and %q", all[i-1], all[i])
		}
	}
	// Tail reaching back into a rotated file.
	n := len(all) - 2
	tail := strings.Split(strings.TrimSuffix(logs(t, dir, driver.LogOptions{Tail: n}), "\n"), "\n")
	if len(tail) != n || tail[n-1] != "line 200" || tail[0] != all[2] {
		t.Fatalf("tail %d: %d lines from %q", n, len(tail), tail[0])
	}
	ts := logs(t, dir, driver.LogOptions{Tail: 1, Timestamps: true})
	stamp, line, _ := strings.Cut(strings.TrimSpace(ts), " ")
	if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil || line != "line 200" {
		t.Fatalf("timestamped tail %q: %v", ts, err)
	}
}

func TestFollow(t *testing.T) {
	dir := tempDir(t)
	launch(t, dir, sh("echo first; sleep 1; echo second; sleep 1; echo third"))
	rc, err := Logs(ctx(t), dir, driver.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The stream ends on its own once the workload exited and all was read.
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "first\nsecond\nthird\n" {
		t.Fatalf("follow %q %v", b, err)
	}
}

func TestFollowStopsOnClose(t *testing.T) {
	dir := tempDir(t)
	launch(t, dir, sh("echo hello; sleep 600"))
	c, cancel := context.WithCancel(ctx(t))
	rc, err := Logs(c, dir, driver.LogOptions{Follow: true, Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(rc)
	if !sc.Scan() || sc.Text() != "hello" {
		t.Fatalf("first line %q %v", sc.Text(), sc.Err())
	}
	cancel()
	for sc.Scan() {
	}
	rc.Close()
}

// TestReadFromAnotherCaller: a caller that launched and exited; this
// process (not the shim's parent) sees the workload and waits for it.
func TestReadFromAnotherCaller(t *testing.T) {
	dir := tempDir(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envLauncher+"="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("launcher: %v %s", err, out)
	}
	var launched State
	if err := json.Unmarshal(out, &launched); err != nil {
		t.Fatalf("launcher output %q: %v", out, err)
	}
	st, err := Read(dir)
	if err != nil || !st.Running || st.PID != launched.PID {
		t.Fatalf("Read from a fresh caller: %+v %v", st, err)
	}
	// The workload has started; its first line may still be on its way.
	for i := 0; i < 600 && logs(t, dir, driver.LogOptions{}) == ""; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if got := logs(t, dir, driver.LogOptions{}); got != "launched\n" {
		t.Fatalf("logs %q", got)
	}
	if err := syscall.Kill(-st.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, dir); st.ExitCode != 128+int(syscall.SIGTERM) || st.Error != "" {
		t.Fatalf("after SIGTERM: %+v", st)
	}
}

func TestShimDied(t *testing.T) {
	dir := tempDir(t)
	st := launch(t, dir, sh("sleep 600"))
	if err := syscall.Kill(st.ShimPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := wait(t, dir)
	if got.Error != ErrShimDied || got.ExitCode != ExitShimDied || got.Running {
		t.Fatalf("after the shim died: %+v", got)
	}
}

func TestCgroupJoin(t *testing.T) {
	cg := filepath.Join("/sys/fs/cgroup/pids", fmt.Sprintf("berth-test-shim-%d", os.Getpid()))
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cgroup v1 pids hierarchy needed in CI: %v", err)
		}
		t.Skipf("no cgroup v1 pids hierarchy: %v", err)
	}
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100 && os.Remove(cg) != nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	})
	dir := tempDir(t) // cleanups run last-first: kill the workload, then remove the cgroup
	spec := sh("cat /proc/self/cgroup")
	spec.Cgroups = []string{filepath.Join(cg, "cgroup.procs")}
	launch(t, dir, spec)
	wait(t, dir)
	if out := logs(t, dir, driver.LogOptions{}); !strings.Contains(out, ":pids:/"+filepath.Base(cg)+"\n") {
		t.Fatalf("/proc/self/cgroup of the workload:\n%s", out)
	}
	if _, err := Launch(tempDir(t), Spec{Args: []string{busybox, "true"}, Cgroups: []string{"/nonexistent-berth-test/cgroup.procs"}}); err == nil ||
		!strings.Contains(err.Error(), "join cgroup") {
		t.Fatalf("bad cgroup: %v", err)
	}
}

func TestExec(t *testing.T) {
	var out strings.Builder
	code, err := Exec(ctx(t), Spec{Args: []string{"sh", "-c", "echo out; echo err >&2; id -u; exit 4"},
		Env: []string{"PATH=/bin"}, Credential: &Credential{UID: 65534, GID: 65534}}, &out)
	if err != nil || code != 4 || out.String() != "out\nerr\n65534\n" {
		t.Fatalf("Exec = %d %v %q", code, err, out.String())
	}
	if _, err := Exec(ctx(t), Spec{Args: []string{"nosuch-berth-test"}}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("Exec of a missing command: %v", err)
	}
	c, cancel := context.WithCancel(ctx(t))
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if code, err := Exec(c, Spec{Args: []string{busybox, "sleep", "600"}}, io.Discard); !errors.Is(err, context.Canceled) || code != 137 {
		t.Fatalf("cancelled Exec = %d %v", code, err)
	}
}

// TestBackgroundHolderDoesNotHoldTheShim: a background process keeping the
// output pipe open does not stop the exit from being recorded.
func TestBackgroundHolderDoesNotHoldTheShim(t *testing.T) {
	dir := tempDir(t)
	st := launch(t, dir, sh("sleep 600 & echo main-done"))
	t.Cleanup(func() { syscall.Kill(-st.PID, syscall.SIGKILL) })
	got := wait(t, dir)
	if got.ExitCode != 0 || Alive(got.ShimPID) && !waitGone(got.ShimPID) {
		t.Fatalf("state %+v (shim still alive: %v)", got, Alive(got.ShimPID))
	}
	if out := logs(t, dir, driver.LogOptions{}); out != "main-done\n" {
		t.Fatalf("logs %q", out)
	}
}

// waitGone waits (generously) for pid to end.
func waitGone(pid int) bool {
	for i := 0; i < 600 && Alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	return !Alive(pid)
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

func TestWaitEndsWithContext(t *testing.T) {
	dir := tempDir(t)
	launch(t, dir, sh("sleep 600"))
	c, cancel := context.WithCancel(ctx(t))
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	st, err := Wait(c, dir)
	if !errors.Is(err, context.Canceled) || !st.Running {
		t.Fatalf("Wait after cancel: %+v %v", st, err)
	}
}

// TestSpareShim: after a Launch a spare shim waits for the next workload,
// the next Launch runs its workload in that spare, and a spare nobody
// needs exits when its control pipe closes.
func TestSpareShim(t *testing.T) {
	first := tempDir(t)
	if _, err := Launch(first, Spec{Args: []string{busybox, "true"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var s *started
	for s == nil && time.Now().Before(deadline) {
		spare.Lock()
		s = spare.s
		spare.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	if s == nil {
		t.Fatal("no spare shim after a Launch")
	}
	second := tempDir(t)
	st, err := Launch(second, Spec{Args: []string{busybox, "sh", "-c", "echo from-spare"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.ShimPID != s.cmd.Process.Pid {
		t.Fatalf("second Launch ran in shim %d, want the spare %d", st.ShimPID, s.cmd.Process.Pid)
	}
	if st, err := Wait(context.Background(), second); err != nil || st.ExitCode != 0 {
		t.Fatalf("Wait: %+v %v", st, err)
	}
	// An idle spare exits when nobody hands it a workload.
	idle, err := startShim()
	if err != nil {
		t.Fatal(err)
	}
	idle.ctl.Close()
	idle.report.Close()
	select {
	case <-idle.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("an idle spare did not exit after its control pipe closed")
	}
}
