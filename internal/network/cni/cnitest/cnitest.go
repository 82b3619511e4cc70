//go:build linux

// Package cnitest gives tests of the drivers a real CNI node network of
// their own: a berth-test-* bridge in a free 10.<second>.x.0/24 subnet,
// state and namespaces in a temp dir, all of it removed at cleanup.
package cnitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/network/cni"
)

// New makes the network in 10.<second>.x.0/24 (pick a second octet per
// package so parallel test binaries do not compete). Without root or
// iptables it skips, or fails under CI=true. Cleanup runs after cleanups
// registered later (a driver's, which detaches its workloads).
func New(t testing.TB, second byte) *cni.Network {
	t.Helper()
	_, err := exec.LookPath("iptables-save")
	require(t, os.Geteuid() == 0 && err == nil, "a CNI network needs root and iptables (apt-get install iptables)")
	dir, err := os.MkdirTemp("", "berth-test-cni-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	opts := cni.Options{StateDir: filepath.Join(dir, "network"), NetNSDir: filepath.Join(dir, "netns"),
		BridgeName: "berth-test-" + hex.EncodeToString(b)}
	t.Cleanup(func() { Cleanup(t, opts) }) // runs before RemoveAll
	for range 20 {
		x := make([]byte, 1)
		_, _ = rand.Read(x)
		opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, x[0], 0}), 24)
		n, err := cni.New(opts)
		if err == nil {
			return n
		}
		if !strings.Contains(err.Error(), "overlaps") {
			require(t, false, "CNI network: %v", err)
		}
	}
	t.Fatalf("no free 10.%d.x.0/24 subnet", second)
	return nil
}

func require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Cleanup removes what a test network may have left even after a failure
// half-way: attachments, namespaces, iptables rules naming its subnet or
// bridge, the bridge.
func Cleanup(t testing.TB, opts cni.Options) {
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
			args := SplitRule(strings.TrimPrefix(line, "-A "))
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

// SplitRule splits an iptables-save rule into arguments, keeping quoted
// comments whole.
func SplitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\' && inQ && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
		case c == '"':
			inQ, have = !inQ, true
		case c == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
