// Package drivertest is the conformance suite every driver.Driver must
// pass. A driver declares the abilities it has in Capabilities; the suite
// checks those and never skips for a missing dependency.
package drivertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver"
)

// Capabilities are the optional abilities of a driver.
type Capabilities struct {
	// PublishedPorts: a task's HostPort answers on 127.0.0.1.
	PublishedPorts bool
	// Exec: Exec runs commands inside the workload.
	Exec bool
	// Pull: Start pulls missing images (and fails clearly when it can't).
	Pull bool
	// InsideDial: the driver implements driver.InsideDialer.
	InsideDial bool
}

// Program is a workload behaviour the suite needs; each driver's harness
// says how to express it (a shell script for container drivers, a mock
// command for the mock driver).
type Program int

// Programs the suite runs.
const (
	// RunForever runs until stopped; SIGTERM ends it.
	RunForever Program = iota
	// Exit0 exits 0 at once.
	Exit0
	// Exit3 exits with code 3 at once.
	Exit3
	// PrintEnv prints "greeting=$GREETING" on stdout and "err-line" on
	// stderr, then exits 0.
	PrintEnv
	// PrintRunExit1 prints "run" and exits 1.
	PrintRunExit1
	// TrapTerm prints "ready"; on SIGTERM it prints "got-term" and exits 0.
	TrapTerm
	// IgnoreTerm prints "ready" and ignores SIGTERM.
	IgnoreTerm
	// FirstThenSecond prints "first", a second later "second", then runs
	// until stopped.
	FirstThenSecond
	// ServeHTTP serves "served" over HTTP on container port 8080.
	ServeHTTP
)

// ShellPrograms expresses every Program as `sh -c` for busybox-like images.
var ShellPrograms = map[Program][]string{
	RunForever:      {"sh", "-c", "sleep 600"},
	Exit0:           {"sh", "-c", "true"},
	Exit3:           {"sh", "-c", "exit 3"},
	PrintEnv:        {"sh", "-c", `echo "greeting=$GREETING"; echo err-line >&2`},
	PrintRunExit1:   {"sh", "-c", "echo run; exit 1"},
	TrapTerm:        {"sh", "-c", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done`},
	IgnoreTerm:      {"sh", "-c", `trap '' TERM; echo ready; while true; do sleep 0.1; done`},
	FirstThenSecond: {"sh", "-c", "echo first; sleep 1; echo second; sleep 600"},
	ServeHTTP:       {"sh", "-c", "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www"},
}

// Harness tells the suite how to use a driver.
type Harness struct {
	// New returns the driver under test.
	New func(t *testing.T) driver.Driver
	// Image is an image the driver can run without pulling.
	Image string
	// Programs maps each Program to the task command that behaves so.
	Programs map[Program][]string
	// Labels are added to every task (must mark them as test workloads,
	// e.g. berth.test=1).
	Labels map[string]string
	// FreePort returns a host port that is free now.
	FreePort func(t *testing.T) int
	Caps     Capabilities
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	d := h.New(t)
	s := &suite{h: h, d: d}
	t.Run("StartInspectList", s.testStartInspectList)
	t.Run("EnvAndCommand", s.testEnvAndCommand)
	t.Run("ExitCode", s.testExitCode)
	t.Run("RestartKeepsID", s.testRestartKeepsID)
	t.Run("GracefulStop", s.testGracefulStop)
	t.Run("KillAfterGrace", s.testKillAfterGrace)
	t.Run("RemoveThenNotFound", s.testRemove)
	t.Run("LogsFollow", s.testLogsFollow)
	if h.Caps.PublishedPorts {
		t.Run("PublishedPort", s.testPublishedPort)
		t.Run("PortConflictLeavesNothing", s.testPortConflict)
	}
	if h.Caps.Exec {
		t.Run("Exec", s.testExec)
	}
	if h.Caps.Pull {
		t.Run("MissingImageLeavesNothing", s.testMissingImage)
	}
	if h.Caps.InsideDial {
		t.Run("DialInside", s.testDialInside)
	}
}

type suite struct {
	h Harness
	d driver.Driver
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func randID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// task makes a task running program p with the suite's labels.
func (s *suite) task(p Program) driver.Task {
	return driver.Task{InstanceID: randID(), Namespace: "default", App: "drivertest", Revision: 1,
		Image: s.h.Image, Command: s.h.Programs[p], Labels: s.h.Labels, MemoryBytes: 32 << 20, CPUMilli: 100}
}

// start starts a task and removes it at cleanup, even on failure.
func (s *suite) start(t *testing.T, task driver.Task) string {
	t.Helper()
	id, err := s.d.Start(ctx(t), task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.d.Remove(context.Background(), id) })
	return id
}

// waitExit waits for the workload to stop running.
func (s *suite) waitExit(t *testing.T, id string) driver.Status {
	t.Helper()
	st, err := s.d.Wait(ctx(t), id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.State == driver.StateRunning {
		t.Fatalf("Wait returned a running workload: %+v", st)
	}
	return st
}

// logs returns everything logged so far.
func (s *suite) logs(t *testing.T, id string) string {
	t.Helper()
	rc, err := s.d.Logs(ctx(t), id, driver.LogOptions{})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// eventually polls cond for up to a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (s *suite) testStartInspectList(t *testing.T) {
	task := s.task(RunForever)
	id := s.start(t, task)
	st, err := s.d.Inspect(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != driver.StateRunning || st.InstanceID != task.InstanceID || st.StartedAt.IsZero() {
		t.Fatalf("Inspect = %+v", st)
	}
	for k, v := range map[string]string{driver.LabelApp: "drivertest", driver.LabelInstance: task.InstanceID,
		driver.LabelNamespace: "default", driver.LabelRevision: "1", driver.LabelManaged: "true"} {
		if st.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, st.Labels[k], v)
		}
	}
	for k, v := range s.h.Labels {
		if st.Labels[k] != v {
			t.Errorf("task label %s = %q, want %q", k, st.Labels[k], v)
		}
	}
	list, err := s.d.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range list {
		found = found || (w.ID == id && w.InstanceID == task.InstanceID)
	}
	if !found {
		t.Fatalf("List does not include %s", id)
	}
}

func (s *suite) testEnvAndCommand(t *testing.T) {
	task := s.task(PrintEnv)
	task.Env = map[string]string{"GREETING": "hi there"}
	id := s.start(t, task)
	s.waitExit(t, id)
	out := s.logs(t, id)
	if !strings.Contains(out, "greeting=hi there") || !strings.Contains(out, "err-line") {
		t.Fatalf("logs = %q", out)
	}
}

func (s *suite) testExitCode(t *testing.T) {
	id := s.start(t, s.task(Exit3))
	st := s.waitExit(t, id)
	if st.ExitCode != 3 || st.State != driver.StateExited {
		t.Fatalf("status %+v, want exited 3", st)
	}
	if ins, _ := s.d.Inspect(ctx(t), id); ins.ExitCode != 3 || ins.FinishedAt.IsZero() {
		t.Fatalf("Inspect %+v", ins)
	}
}

func (s *suite) testRestartKeepsID(t *testing.T) {
	id := s.start(t, s.task(PrintRunExit1))
	s.waitExit(t, id)
	if err := s.d.Restart(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	s.waitExit(t, id)
	if n := strings.Count(s.logs(t, id), "run"); n != 2 {
		t.Fatalf("ran %d times, want 2 (same workload restarted)", n)
	}
	if err := s.d.Restart(ctx(t), "berth-test-missing-"+randID()); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Restart missing: %v", err)
	}
}

func (s *suite) testGracefulStop(t *testing.T) {
	id := s.start(t, s.task(TrapTerm))
	eventually(t, "ready", func() bool { return strings.Contains(s.logs(t, id), "ready") })
	if err := s.d.Stop(ctx(t), id, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	st, _ := s.d.Inspect(ctx(t), id)
	if st.State != driver.StateExited || st.ExitCode != 0 || !strings.Contains(s.logs(t, id), "got-term") {
		t.Fatalf("after graceful stop: %+v, logs %q", st, s.logs(t, id))
	}
	if err := s.d.Stop(ctx(t), id, time.Second); err != nil && !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("stopping an exited workload: %v", err)
	}
}

func (s *suite) testKillAfterGrace(t *testing.T) {
	id := s.start(t, s.task(IgnoreTerm))
	eventually(t, "ready", func() bool { return strings.Contains(s.logs(t, id), "ready") })
	if err := s.d.Stop(ctx(t), id, time.Second); err != nil {
		t.Fatal(err)
	}
	st, _ := s.d.Inspect(ctx(t), id)
	if st.State != driver.StateExited || st.ExitCode != 137 {
		t.Fatalf("after stop of a TERM-ignoring process: %+v, want killed (137)", st)
	}
}

func (s *suite) testRemove(t *testing.T) {
	id := s.start(t, s.task(RunForever))
	if err := s.d.Remove(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.Inspect(ctx(t), id); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Inspect after Remove: %v", err)
	}
	if err := s.d.Remove(ctx(t), id); err != nil {
		t.Fatalf("Remove twice: %v", err)
	}
}

func (s *suite) testLogsFollow(t *testing.T) {
	id := s.start(t, s.task(FirstThenSecond))
	rc, err := s.d.Logs(ctx(t), id, driver.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	timeout := time.After(time.Minute)
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("follow stream ended after %v", got)
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("follow got %v", got)
		}
	}
	if got[0] != "first" || got[1] != "second" {
		t.Fatalf("follow lines %v", got)
	}
	tail, err := s.d.Logs(ctx(t), id, driver.LogOptions{Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(tail)
	tail.Close()
	if strings.TrimSpace(string(b)) != "second" {
		t.Fatalf("tail 1 = %q", b)
	}
}

func (s *suite) testPublishedPort(t *testing.T) {
	task := s.task(ServeHTTP)
	port := s.h.FreePort(t)
	task.Ports = []driver.PortBinding{{Name: "http", ContainerPort: 8080, HostPort: port, Protocol: "tcp"}}
	s.start(t, task)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	eventually(t, "http answer on the published port", func() bool {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)) == "served"
	})
}

// countInstance counts workloads of an instance ID in List.
func (s *suite) countInstance(t *testing.T, instanceID string) int {
	list, err := s.d.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range list {
		if w.InstanceID == instanceID {
			n++
		}
	}
	return n
}

func (s *suite) testPortConflict(t *testing.T) {
	port := s.h.FreePort(t)
	a := s.task(RunForever)
	a.Ports = []driver.PortBinding{{Name: "p", ContainerPort: 80, HostPort: port, Protocol: "tcp"}}
	s.start(t, a)
	b := s.task(RunForever)
	b.Ports = a.Ports
	id, err := s.d.Start(ctx(t), b)
	if err == nil {
		_ = s.d.Remove(context.Background(), id)
		t.Fatal("second Start on the same host port succeeded")
	}
	if !strings.Contains(err.Error(), fmt.Sprint(port)) && !strings.Contains(err.Error(), "allocated") {
		t.Fatalf("error does not explain the conflict: %v", err)
	}
	if n := s.countInstance(t, b.InstanceID); n != 0 {
		t.Fatalf("failed Start left %d workloads behind", n)
	}
}

func (s *suite) testExec(t *testing.T) {
	id := s.start(t, s.task(RunForever))
	res, err := s.d.Exec(ctx(t), id, []string{"sh", "-c", "echo out; echo err >&2; exit 4"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 4 || !strings.Contains(res.Output, "out") || !strings.Contains(res.Output, "err") {
		t.Fatalf("Exec = %+v", res)
	}
	if res, err := s.d.Exec(ctx(t), id, []string{"true"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec true = %+v %v", res, err)
	}
}

func (s *suite) testMissingImage(t *testing.T) {
	task := s.task(Exit0)
	task.Image = "berth-test/does-not-exist-" + randID()[11:] + ":1"
	id, err := s.d.Start(ctx(t), task)
	if err == nil {
		_ = s.d.Remove(context.Background(), id)
		t.Fatal("Start with a missing image succeeded")
	}
	if !strings.Contains(err.Error(), task.Image) {
		t.Fatalf("error does not name the image: %v", err)
	}
	if n := s.countInstance(t, task.InstanceID); n != 0 {
		t.Fatalf("failed Start left %d workloads behind", n)
	}
}

// testDialInside: a listening port answers from inside; a port that is
// published but has no listener does not, proxy or not.
func (s *suite) testDialInside(t *testing.T) {
	dialer, ok := s.d.(driver.InsideDialer)
	if !ok {
		t.Fatal("Capabilities.InsideDial is set but the driver is not a driver.InsideDialer")
	}
	task := s.task(ServeHTTP)
	if s.h.Caps.PublishedPorts {
		task.Ports = []driver.PortBinding{{Name: "idle", ContainerPort: 81, HostPort: s.h.FreePort(t), Protocol: "tcp"}}
	}
	id := s.start(t, task)
	eventually(t, "port 8080 answering inside", func() bool {
		c, err := dialer.DialInside(ctx(t), id, "tcp", 8080)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if c, err := dialer.DialInside(ctx(t), id, "tcp", 81); err == nil {
		c.Close()
		t.Fatal("DialInside to a port with no listener succeeded")
	}
}

// FreeTCPPort returns a port free on 127.0.0.1 now.
func FreeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
