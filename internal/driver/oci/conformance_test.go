//go:build linux

package oci

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
	"golang.org/x/sys/unix"
)

// testLabels mark every test workload.
var testLabels = map[string]string{"berth.test": "1"}

// newTestDriver returns a driver for runtime name over a fresh state dir
// with the local busybox rootfs and no network, removing every workload it
// made at cleanup.
func newTestDriver(t testing.TB, name string) *Driver {
	t.Helper()
	return newDriverWith(t, Options{RootFS: newBusyboxProvider(t), Runtimes: map[string]string{name: requireRuntime(t, name)},
		DefaultRuntime: name})
}

// newDriverWith returns a driver with o over a fresh state dir, removing
// every workload it made (and runsc's namespace mount) at cleanup.
func newDriverWith(t testing.TB, o Options) *Driver {
	t.Helper()
	o.StateDir, o.Node = tempDir(t), "berth-test-node"
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		removeAll(t, d)
		unmountUnder(t, d.o.StateDir)
	})
	return d
}

// removeAll removes every workload of d.
func removeAll(t testing.TB, d *Driver) {
	list, err := d.List(context.Background())
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, w := range list {
		if err := d.Remove(context.Background(), w.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// unmountUnder detaches every mount below dir (runsc keeps a null
// network namespace bind-mounted in its root).
func unmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			if err := unix.Unmount(f[4], unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", f[4], err)
			}
		}
	}
}

// TestConformance runs the suite under each runtime with the real image
// store pulling from a registry on 127.0.0.1 and a CNI node network on a
// test bridge.
func TestConformance(t *testing.T) {
	images, ref := newTestImages(t)
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newDriverWith(t, Options{RootFS: images, Network: newTestNetwork(t),
				Runtimes: map[string]string{name: requireRuntime(t, name)}, DefaultRuntime: name})
			drivertest.Run(t, drivertest.Harness{
				New:      func(*testing.T) driver.Driver { return d },
				Image:    ref,
				Programs: drivertest.ShellPrograms,
				Labels:   testLabels,
				FreePort: drivertest.FreeTCPPort,
				Caps:     drivertest.Capabilities{Exec: true, Pull: true, InsideDial: true, PublishedPorts: true},
			})
		})
	}
}

// TestConformanceNoNetwork runs the suite without a node network (each
// workload has a namespace with only loopback) on a local busybox rootfs.
// Under runsc nothing can dial into such a sandbox.
func TestConformanceNoNetwork(t *testing.T) {
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			d := newTestDriver(t, name)
			drivertest.Run(t, drivertest.Harness{
				New:      func(*testing.T) driver.Driver { return d },
				Image:    testImage,
				Programs: drivertest.ShellPrograms,
				Labels:   testLabels,
				FreePort: drivertest.FreeTCPPort,
				Caps:     drivertest.Capabilities{Exec: true, Pull: true, InsideDial: name != Runsc},
			})
		})
	}
}
