//go:build linux

package oci

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/registrytest"
	"github.com/berth-dev/berth/internal/network/cni"
	"github.com/berth-dev/berth/internal/network/cni/cnitest"
)

// newTestNetwork makes a CNI node network of its own in 10.215.x.0/24,
// removed at cleanup (after the driver's own cleanup, which detaches its
// workloads).
func newTestNetwork(t testing.TB) *cni.Network { return cnitest.New(t, 215) }

// localOnly refuses registry traffic to anything but 127.0.0.1, so a
// test pulling a missing image never reaches out to Docker Hub.
type localOnly struct{}

// RoundTrip implements http.RoundTripper.
func (localOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Hostname() != "127.0.0.1" {
		return nil, fmt.Errorf("test transport: refusing to contact %s (tests talk to 127.0.0.1 only)", r.URL.Host)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// newTestImages starts a registry on 127.0.0.1 with a busybox image and
// opens an image store over it; it returns the store and the image's
// reference.
func newTestImages(t testing.TB) (*image.Service, string) {
	t.Helper()
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushBusybox(t, "berth-test/busybox:latest")
	dir, err := os.MkdirTemp("", "berth-test-images-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := image.Open(dir, image.Options{Transport: localOnly{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ref
}

// TestRemoveLeavesNothing: with the image store and a CNI network, Remove
// (and a failed Start) leave no container in the runtime, no rootfs
// mount, no network namespace or attachment and no workload directory.
func TestRemoveLeavesNothing(t *testing.T) {
	images, ref := newTestImages(t)
	for _, name := range KnownRuntimes {
		t.Run(name, func(t *testing.T) {
			n := newTestNetwork(t)
			d := newDriverWith(t, Options{RootFS: images, Network: n, Runtimes: map[string]string{name: requireRuntime(t, name)},
				DNS: netip.MustParseAddr("192.0.2.53")})
			tk := task(randomID(t), "sleep 600")
			tk.Image = ref
			id, err := d.Start(testCtx(t), tk)
			if err != nil {
				t.Fatal(err)
			}
			att, ok, err := n.Get(testCtx(t), id)
			if err != nil || !ok {
				t.Fatalf("no attachment: %v", err)
			}
			res, err := d.Exec(testCtx(t), id, []string{"cat", "/etc/hosts"})
			if err != nil || !strings.Contains(res.Output, att.IP.String()+"\t"+id) {
				t.Errorf("/etc/hosts = %+v %v, want %s for %s", res, err, att.IP, id)
			}
			res, err = d.Exec(testCtx(t), id, []string{"cat", "/etc/resolv.conf"})
			if err != nil || !strings.Contains(res.Output, "nameserver 192.0.2.53\n") || !strings.Contains(res.Output, "search default.berth berth") {
				t.Errorf("/etc/resolv.conf = %+v %v, want the node DNS and search default.berth berth", res, err)
			}
			if st, err := d.Inspect(testCtx(t), id); err != nil || st.IP != att.IP {
				t.Errorf("Inspect IP = %v %v, want the attachment's %v", st.IP, err, att.IP)
			}
			if n := iptablesLines(id); n == 0 {
				t.Errorf("no iptables rule names %s while it runs: the leak check below would see nothing", id)
			}
			rt, _ := d.runtime(name)
			if err := d.Remove(testCtx(t), id); err != nil {
				t.Fatal(err)
			}
			assertGone(t, d, rt, n, id, att.NetNS)

			bad := task(randomID(t), "true")
			bad.Image, bad.User = ref, "nosuchuser"
			bad.Ports = []driver.PortBinding{{Name: "p", ContainerPort: 80, HostPort: drivertest.FreeTCPPort(t), Protocol: "tcp"}}
			if _, err := d.Start(testCtx(t), bad); err == nil {
				t.Fatal("Start as a missing user succeeded")
			}
			assertGone(t, d, rt, n, bad.InstanceID, n.NetNSPath(bad.InstanceID))
		})
	}
}

// assertGone checks that nothing of workload id is left.
func assertGone(t *testing.T, d *Driver, rt *runtime, n *cni.Network, id, netnsPath string) {
	t.Helper()
	if _, err := rt.state(testCtx(t), id); err != errNoContainer {
		t.Errorf("%s still knows container %s: %v", rt.name, id, err)
	}
	if _, ok, _ := n.Get(testCtx(t), id); ok {
		t.Errorf("attachment of %s left", id)
	}
	if _, err := os.Stat(netnsPath); !os.IsNotExist(err) {
		t.Errorf("netns %s left: %v", netnsPath, err)
	}
	if _, err := os.Stat(d.dir(id)); !os.IsNotExist(err) {
		t.Errorf("workload dir left: %v", err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), id) {
		t.Errorf("a mount naming %s is left", id)
	}
	if n := iptablesLines(id); n > 0 {
		t.Errorf("%d iptables rules of %s left", n, id)
	}
}

// iptablesLines counts iptables rules that name s.
func iptablesLines(s string) int {
	n := 0
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		n += strings.Count(string(out), s)
	}
	return n
}

// TestConcurrentStarts starts several workloads at once under each
// runtime on one network: each gets its own address and they all run.
func TestConcurrentStarts(t *testing.T) {
	images, ref := newTestImages(t)
	n := newTestNetwork(t)
	paths := map[string]string{}
	for _, name := range KnownRuntimes {
		paths[name] = requireRuntime(t, name)
	}
	d := newDriverWith(t, Options{RootFS: images, Network: n, Runtimes: paths})
	const perRuntime = 3
	type result struct {
		id  string
		err error
	}
	results := make(chan result, perRuntime*len(KnownRuntimes))
	for _, name := range KnownRuntimes {
		for range perRuntime {
			go func() {
				tk := task(randomID(t), "sleep 600")
				tk.Image, tk.Runtime = ref, name
				id, err := d.Start(testCtx(t), tk)
				results <- result{id, err}
			}()
		}
	}
	ips := map[string]string{}
	for range perRuntime * len(KnownRuntimes) {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		att, ok, err := n.Get(testCtx(t), r.id)
		if err != nil || !ok {
			t.Errorf("%s has no attachment: %v", r.id, err)
			continue
		}
		if other, dup := ips[att.IP.String()]; dup {
			t.Errorf("%s and %s share %s", r.id, other, att.IP)
		}
		ips[att.IP.String()] = r.id
	}
	list, err := d.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, w := range list {
		if w.State == driver.StateRunning {
			running++
		}
	}
	if running != perRuntime*len(KnownRuntimes) {
		t.Fatalf("%d of %d workloads running: %+v", running, perRuntime*len(KnownRuntimes), list)
	}
}
