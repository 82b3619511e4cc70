//go:build linux

package cgroups

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSettingsTables(t *testing.T) {
	for _, tc := range []struct {
		name   string
		l      Limits
		v1, v2 []string
	}{
		{"unlimited", Limits{},
			[]string{"cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=-1", "pids/pids.max=4096"},
			[]string{"cpu.max=max 100000", "memory.max=max", "pids.max=4096"}},
		{"quarter core, 64MiB, 100 pids", Limits{CPUMilli: 250, MemoryBytes: 64 << 20, Pids: 100},
			[]string{"cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=25000",
				"memory/memory.limit_in_bytes=67108864", "memory/memory.memsw.limit_in_bytes=67108864?", "pids/pids.max=100"},
			[]string{"cpu.max=25000 100000", "memory.max=67108864", "memory.swap.max=0?", "pids.max=100"}},
		{"two cores, pids unlimited", Limits{CPUMilli: 2000, Pids: -1},
			[]string{"cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=200000", "pids/pids.max=max"},
			[]string{"cpu.max=200000 100000", "memory.max=max", "pids.max=max"}},
		{"tiny cpu is raised to the kernel minimum", Limits{CPUMilli: 1},
			[]string{"cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=1000", "pids/pids.max=4096"},
			[]string{"cpu.max=1000 100000", "memory.max=max", "pids.max=4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flatten(v1Settings(tc.l)); !reflect.DeepEqual(got, tc.v1) {
				t.Errorf("v1:\n got %q\nwant %q", got, tc.v1)
			}
			if got := flatten(v2Settings(tc.l)); !reflect.DeepEqual(got, tc.v2) {
				t.Errorf("v2:\n got %q\nwant %q", got, tc.v2)
			}
		})
	}
}

func flatten(s []setting) []string {
	var out []string
	for _, x := range s {
		f := x.File
		if x.Controller != "" {
			f = x.Controller + "/" + f
		}
		opt := ""
		if x.Optional {
			opt = "?"
		}
		out = append(out, f+"="+x.Value+opt)
	}
	return out
}

// TestV2OnAFakeTree runs the v2 code path on a plain directory standing in
// for the unified hierarchy (this host's unified mount has no controllers).
func TestV2OnAFakeTree(t *testing.T) {
	root := testDir(t)
	m, err := New(Options{Root: root, Parent: "berth/nested", Mode: ModeV2})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Create("w1", Limits{CPUMilli: 500, MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cgroup.subtree_control":              "+cpu +memory +pids",
		"berth/cgroup.subtree_control":        "+cpu +memory +pids",
		"berth/nested/cgroup.subtree_control": "+cpu +memory +pids",
		"berth/nested/w1/cpu.max":             "50000 100000",
		"berth/nested/w1/memory.max":          "1048576",
		"berth/nested/w1/pids.max":            "4096",
	}
	for f, v := range want {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(b) != v {
			t.Errorf("%s = %q (%v), want %q", f, b, err, v)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "berth/nested/w1/memory.swap.max")); err == nil {
		t.Error("optional memory.swap.max was created where the kernel has none")
	}
	if got := c.Procs(); !reflect.DeepEqual(got, []string{filepath.Join(root, "berth/nested/w1/cgroup.procs")}) {
		t.Errorf("Procs = %v", got)
	}
	os.WriteFile(filepath.Join(root, "berth/nested/w1/cgroup.procs"), []byte("12\n34\n"), 0o644)
	if pids, err := c.Pids(); err != nil || !reflect.DeepEqual(pids, []int{12, 34}) {
		t.Errorf("Pids = %v %v", pids, err)
	}
}

func TestNewRejectsEscapingParent(t *testing.T) {
	for _, p := range []string{"/abs", "../up", "a/../../b"} {
		if _, err := New(Options{Root: testDir(t), Parent: p, Mode: ModeV2}); err == nil {
			t.Errorf("parent %q accepted", p)
		}
	}
	m, _ := New(Options{Root: testDir(t), Mode: ModeV2})
	for _, id := range []string{"", "a/b", ".."} {
		if _, err := m.Create(id, Limits{}); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
}

// realManager is a manager on this host's cgroups under a berth-test-*
// parent that is removed at cleanup.
func realManager(t *testing.T) *Manager {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	m, err := New(Options{Parent: "berth-test-cg-" + hex.EncodeToString(b)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cgroups are required in CI: %v", err)
		}
		t.Skipf("no usable cgroups: %v", err)
	}
	t.Cleanup(func() {
		if err := m.RemoveParent(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return m
}

// create makes a cgroup deleted at cleanup.
func create(t *testing.T, m *Manager, id string, l Limits) *Cgroup {
	t.Helper()
	c, err := m.Create(id, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

// startIn starts script in c: the shell waits for a line on stdin, sent
// once it has joined.
func startIn(t *testing.T, c *Cgroup, script string) (*exec.Cmd, io.WriteCloser, func() string) {
	t.Helper()
	cmd := exec.Command("/bin/busybox", "sh", "-c", "read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(testDir(t), "out")
	f, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := func() string { b, _ := os.ReadFile(outPath); return string(b) }
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, p := range c.Procs() {
		if err := os.WriteFile(p, []byte(fmt.Sprint(cmd.Process.Pid)), 0); err != nil {
			t.Fatalf("join %s: %v", p, err)
		}
	}
	fmt.Fprintln(in, "go")
	return cmd, in, out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestRealCgroupLimitsKillDelete(t *testing.T) {
	m := realManager(t)
	c := create(t, m, "berth-test-w1", Limits{CPUMilli: 250, MemoryBytes: 64 << 20, Pids: 50})
	switch m.Mode() {
	case ModeV1:
		for f, v := range map[string]string{"cpu/cpu.cfs_quota_us": "25000", "cpu/cpu.cfs_period_us": "100000",
			"memory/memory.limit_in_bytes": "67108864", "pids/pids.max": "50"} {
			ctrl, file, _ := strings.Cut(f, "/")
			if got := readFile(t, filepath.Join(c.dir(ctrl), file)); got != v {
				t.Errorf("%s = %s, want %s", f, got, v)
			}
		}
		if p := filepath.Join(c.dir("memory"), "memory.memsw.limit_in_bytes"); fileExists(p) && readFile(t, p) != "67108864" {
			t.Errorf("memsw = %s", readFile(t, p))
		}
	case ModeV2:
		if got := readFile(t, filepath.Join(c.dir(""), "cpu.max")); got != "25000 100000" {
			t.Errorf("cpu.max = %s", got)
		}
	}
	// A process and a child it leaves behind are both in the cgroup, and
	// both die on Delete.
	cmd, _, _ := startIn(t, c, "sleep 600 & echo started; wait")
	var pids []int
	deadline := time.Now().Add(time.Minute)
	for len(pids) < 2 && time.Now().Before(deadline) {
		pids, _ = c.Pids()
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) < 2 || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Pids = %v, want the shell %d and its sleep", pids, cmd.Process.Pid)
	}
	if st, err := c.Stats(); err != nil || st.MemoryBytes <= 0 || st.Pids != len(pids) {
		t.Errorf("Stats = %+v %v", st, err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Exists() {
		t.Fatal("cgroup still exists after Delete")
	}
	for _, pid := range pids {
		if pid != cmd.Process.Pid && running(pid) {
			t.Errorf("pid %d survived Delete", pid)
		}
	}
	if ws, _ := cmd.Process.Wait(); ws == nil || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("shell ended with %v, want killed", ws)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatalf("Delete twice: %v", err)
	}
}

func TestRealPidsLimit(t *testing.T) {
	m := realManager(t)
	c := create(t, m, "berth-test-pids", Limits{Pids: 3})
	cmd, _, out := startIn(t, c, "for i in 1 2 3 4 5 6; do sleep 30 & done; echo done")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(strings.ToLower(out()), "fork") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pids, _ := c.Pids(); len(pids) > 3 {
		t.Errorf("%d processes in a cgroup limited to 3", len(pids))
	}
	if !strings.Contains(strings.ToLower(out()), "fork") {
		t.Errorf("no fork failure reported: %q", out())
	}
	_ = cmd
}

func TestOpenAfterRestart(t *testing.T) {
	m := realManager(t)
	create(t, m, "berth-test-open", Limits{})
	again, err := New(Options{Parent: m.parent})
	if err != nil {
		t.Fatal(err)
	}
	c := again.Open("berth-test-open")
	if !c.Exists() || !reflect.DeepEqual(c.Procs(), m.Open("berth-test-open").Procs()) {
		t.Fatalf("reopened cgroup: exists %v procs %v", c.Exists(), c.Procs())
	}
	if again.Open("berth-test-never").Exists() {
		t.Fatal("a cgroup never created exists")
	}
}

func TestDetectThisHost(t *testing.T) {
	mode, err := Detect("/sys/fs/cgroup")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	var st syscall.Statfs_t
	syscall.Statfs("/sys/fs/cgroup", &st)
	if want := map[bool]Mode{true: ModeV2, false: ModeV1}[st.Type == 0x63677270]; mode != want {
		t.Fatalf("Detect = %v, want %v", mode, want)
	}
	if _, err := Detect(testDir(t)); err == nil {
		t.Fatal("Detect accepted a plain directory")
	}
}

// running reports whether pid is alive and not a zombie waiting for its
// parent (the orphaned sleep is reaped by init, in its own time).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

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
