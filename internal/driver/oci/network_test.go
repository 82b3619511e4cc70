//go:build linux

package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/registrytest"
	"github.com/berth-dev/berth/internal/network/cni"
)

// need skips t when ok is false, or fails it under CI=true.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTestNetwork makes a CNI node network on a berth-test-* bridge in a
// free 10.215.x.0/24 subnet, state and namespaces in a temp dir; the
// bridge, iptables rules and namespaces are removed at cleanup (after the
// driver's own cleanup, which detaches its workloads).
func newTestNetwork(t testing.TB) *cni.Network {
	t.Helper()
	_, err := exec.LookPath("iptables-save")
	need(t, err == nil, "iptables-save not found (apt-get install iptables)")
	dir, err := os.MkdirTemp("", "berth-test-cni-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	opts := cni.Options{StateDir: filepath.Join(dir, "network"), NetNSDir: filepath.Join(dir, "netns"),
		BridgeName: "berth-test-" + randHex(2)}
	t.Cleanup(func() { cleanupNetwork(t, opts) })
	for range 20 {
		x := make([]byte, 1)
		_, _ = rand.Read(x)
		opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 215, x[0], 0}), 24)
		n, err := cni.New(opts)
		if err == nil {
			return n
		}
		if !strings.Contains(err.Error(), "overlaps") {
			need(t, false, "CNI network: %v", err)
		}
	}
	t.Fatal("no free 10.215.x.0/24 subnet")
	return nil
}

// cleanupNetwork removes what a test network may have left even after a
// failure half-way: attachments, namespaces, iptables rules naming its
// subnet or bridge, the bridge.
func cleanupNetwork(t testing.TB, opts cni.Options) {
	ctx := context.Background()
	if !opts.Subnet.IsValid() {
		return
	}
	if n, err := cni.New(opts); err == nil {
		ids, _ := n.List(ctx)
		for _, id := range ids {
			if err := n.Detach(ctx, id); err != nil {
				t.Logf("cleanup: detach %s: %v", id, err)
			}
		}
	}
	if ents, err := os.ReadDir(opts.NetNSDir); err == nil {
		for _, e := range ents {
			p := filepath.Join(opts.NetNSDir, e.Name())
			_ = unix.Unmount(p, unix.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
	prefix := strings.TrimSuffix(opts.Subnet.Addr().String(), "0")
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !(strings.Contains(line, prefix) || strings.Contains(line, opts.BridgeName)) {
				continue
			}
			args := splitRule(strings.TrimPrefix(line, "-A "))
			if len(args) > 0 && strings.HasPrefix(args[0], "CNI-") && len(args[0]) == 28 {
				chains = append(chains, args[0])
			}
			if out, err := exec.Command("iptables", append([]string{"-t", table, "-D"}, args...)...).CombinedOutput(); err != nil {
				t.Logf("cleanup: iptables -D %v: %v %s", args, err, out)
			}
		}
		for _, c := range chains {
			_ = exec.Command("iptables", "-t", table, "-X", c).Run()
		}
	}
	if l, err := netlink.LinkByName(opts.BridgeName); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Logf("cleanup: delete bridge %s: %v", opts.BridgeName, err)
		}
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted
// comments whole.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQ, have = !inQ, true
		case c == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

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
			d := newDriverWith(t, Options{RootFS: images, Network: n, Runtimes: map[string]string{name: requireRuntime(t, name)}})
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
