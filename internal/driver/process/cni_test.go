//go:build linux

package process

import (
	"context"
	"crypto/rand"
	"fmt"
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
	"github.com/berth-dev/berth/internal/network/cni"
)

// newCNI makes a node network on a berth-test-* bridge in a free
// 10.214.x.0/24 subnet, with its state and namespaces in a temp dir; all
// of it (bridge, iptables rules, namespaces) is removed at cleanup.
func newCNI(t *testing.T) *cni.Network {
	t.Helper()
	require(t, os.Geteuid() == 0, "a CNI network needs root")
	_, err := exec.LookPath("iptables-save")
	require(t, err == nil, "iptables-save not found (apt-get install iptables)")
	dir, err := os.MkdirTemp("", "berth-test-cni-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	opts := cni.Options{StateDir: filepath.Join(dir, "network"), NetNSDir: filepath.Join(dir, "netns"),
		BridgeName: "berth-test-" + randHex(2)}
	t.Cleanup(func() { cleanupCNI(t, opts) }) // runs before RemoveAll
	var n *cni.Network
	for range 20 {
		x := make([]byte, 1)
		_, _ = rand.Read(x)
		opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, x[0], 0}), 24)
		if n, err = cni.New(opts); err == nil {
			return n
		}
		if !strings.Contains(err.Error(), "overlaps") {
			break
		}
	}
	require(t, false, "CNI network: %v", err)
	return nil
}

// cleanupCNI removes what a test network may have left even after a
// failure half-way: attachments, namespaces, iptables rules naming its
// subnet or bridge, the bridge.
func cleanupCNI(t *testing.T, opts cni.Options) {
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

func TestConformanceCNI(t *testing.T) {
	n := newCNI(t)
	d := newDriver(t, testOptions(t, n))
	drivertest.Run(t, drivertest.Harness{
		New:      func(*testing.T) driver.Driver { return d },
		Image:    HostImage,
		Programs: programs(t.TempDir()),
		Labels:   map[string]string{"berth.test": "1"},
		FreePort: drivertest.FreeTCPPort,
		Caps:     drivertest.Capabilities{Exec: true, InsideDial: true, PublishedPorts: true},
	})
}

// TestNetworkIsolationAndRemove: the workload has its own namespace (its
// eth0 has an address from the test subnet), Exec runs there too, and
// Remove detaches it.
func TestNetworkIsolationAndRemove(t *testing.T) {
	n := newCNI(t)
	d := newDriver(t, testOptions(t, n))
	id := start(t, d, task(busybox, "sleep", "600"))
	att, ok, err := n.Get(ctx(t), id)
	if err != nil || !ok {
		t.Fatalf("no attachment: %v", err)
	}
	pid := pidOf(t, d, id)
	self, _ := os.Readlink("/proc/self/ns/net")
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if self == theirs {
		t.Fatalf("workload shares the test's network namespace (%s)", self)
	}
	res, err := d.Exec(ctx(t), id, []string{busybox, "ip", "-4", "addr", "show", "eth0"})
	if err != nil || res.ExitCode != 0 || !strings.Contains(res.Output, att.IP.String()+"/") {
		t.Fatalf("Exec ip addr = %+v %v, want %s", res, err, att.IP)
	}
	if err := d.Remove(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := n.Get(ctx(t), id); ok {
		t.Fatal("attachment left after Remove")
	}
	if _, err := os.Stat(att.NetNS); !os.IsNotExist(err) {
		t.Fatalf("netns %s left after Remove: %v", att.NetNS, err)
	}
}
