//go:build linux

package oci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/driver/shim"
	"github.com/berth-dev/berth/internal/rootfs"
	"golang.org/x/sys/unix"
)

// testImage is the only image busyboxProvider knows.
const testImage = "berth-test/busybox:latest"

// testBase is the busybox root filesystem every test workload copies.
var testBase string

func TestMain(m *testing.M) {
	shim.MaybeRun()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	fresh := newCgroupParents()
	defer fresh.remove()
	dir, err := os.MkdirTemp("", "berth-test-oci-rootfs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testBase = filepath.Join(dir, "rootfs")
	if err := buildBusybox(testBase); err != nil {
		fmt.Fprintln(os.Stderr, "building the busybox rootfs:", err)
		return 1
	}
	return m.Run()
}

// buildBusybox makes a root filesystem from the host's static busybox,
// like scripts/test-image.sh: the binary, its applet links and minimal
// /etc/passwd and /etc/group.
func buildBusybox(root string) error {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return fmt.Errorf("%s is missing (install busybox-static): %w", bb, err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "sys", "dev", "home/app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if out, err := exec.Command("cp", bb, filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp busybox: %v: %s", err, out)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
				return err
			}
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// busyboxProvider is a rootfs.Provider with one image, testImage: each
// workload gets an overlay mount of testBase with its own upper layer.
type busyboxProvider struct {
	dir string
	mu  sync.Mutex
}

func newBusyboxProvider(t testing.TB) *busyboxProvider {
	p := &busyboxProvider{dir: tempDir(t)}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(p.dir)
		for _, e := range entries {
			_ = p.Release(context.Background(), e.Name())
		}
	})
	return p
}

// Prepare implements rootfs.Provider.
func (p *busyboxProvider) Prepare(ctx context.Context, ref, id string) (rootfs.Mount, error) {
	if ref != testImage {
		return rootfs.Mount{}, fmt.Errorf("pull %s: manifest unknown", ref)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := filepath.Join(p.dir, id)
	merged := filepath.Join(dir, "merged")
	cfg := rootfs.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}}
	if _, err := os.Stat(filepath.Join(merged, "bin")); err == nil {
		return rootfs.Mount{Path: merged, Config: cfg}, nil
	}
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return rootfs.Mount{}, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", testBase, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		os.RemoveAll(dir)
		return rootfs.Mount{}, fmt.Errorf("mount overlay: %w", err)
	}
	return rootfs.Mount{Path: merged, Config: cfg}, nil
}

// Release implements rootfs.Provider.
func (p *busyboxProvider) Release(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := filepath.Join(p.dir, id)
	if err := unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", id, err)
	}
	return os.RemoveAll(dir)
}

// cgroupParents are the /berth cgroups of each hierarchy that did not
// exist before the tests, removed after them (when empty).
type cgroupParents []string

func newCgroupParents() cgroupParents {
	var fresh cgroupParents
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*")
	dirs = append(dirs, "/sys/fs/cgroup")
	for _, d := range dirs {
		p := filepath.Join(d, "berth")
		if _, err := os.Stat(p); os.IsNotExist(err) {
			fresh = append(fresh, p)
		}
	}
	return fresh
}

func (c cgroupParents) remove() {
	for _, p := range c {
		_ = os.Remove(p)
	}
}

// tempDir is a fresh berth-test-* directory removed at cleanup.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-oci-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}
