//go:build linux

package overlay

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns runs f on a locked thread inside a new network namespace
// berth-test-<random>, deleted afterwards even when f fails.
func inNetns(t *testing.T, f func()) {
	b := make([]byte, 4)
	rand.Read(b)
	name := "berth-test-ov" + hex.EncodeToString(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread dies with the namespace still set: never unlocked
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		defer netns.DeleteNamed(name)
		f()
	}()
	<-done
}

func TestUpSyncPruneDelete(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables not found (scripts/deps.sh installs it)")
	}
	inNetns(t, func() {
		under := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1400}, PeerName: "eth1"}
		if err := netlink.LinkAdd(under); err != nil {
			t.Error(err)
			return
		}
		addr, _ := netlink.ParseAddr("10.219.7.2/24")
		if err := netlink.AddrAdd(under, addr); err != nil {
			t.Error(err)
			return
		}
		netlink.LinkSetUp(under)
		if _, err := Up(Options{Local: netip.MustParseAddr("10.219.7.9"), Subnet: netip.MustParsePrefix("10.90.1.0/24")}); err == nil ||
			!strings.Contains(err.Error(), "no interface holds") {
			t.Errorf("Up with a foreign address: %v", err)
		}
		opts := Options{Local: netip.MustParseAddr("10.219.7.2"), Subnet: netip.MustParsePrefix("10.90.1.0/24")}
		v, err := Up(opts)
		if err != nil {
			t.Error(err)
			return
		}
		if v.MTU() != 1350 || len(v.MAC()) != 6 {
			t.Errorf("MTU %d MAC %s", v.MTU(), v.MAC())
		}
		// Up again adopts the same device (the MAC peers know is kept).
		v2, err := Up(opts)
		if err != nil || v2.MAC().String() != v.MAC().String() {
			t.Errorf("second Up: %v, MAC %s → %s", err, v.MAC(), v2.MAC())
		}
		macB, _ := net.ParseMAC("02:00:00:00:00:0b")
		macC, _ := net.ParseMAC("02:00:00:00:00:0c")
		peers := []Peer{
			{Name: "b", Subnet: netip.MustParsePrefix("10.90.2.0/24"), Address: netip.MustParseAddr("10.219.7.3"), MAC: macB},
			{Name: "c", Subnet: netip.MustParsePrefix("10.90.3.0/24"), Address: netip.MustParseAddr("10.219.7.4"), MAC: macC},
		}
		for range 2 { // idempotent
			if err := v.Sync(peers); err != nil {
				t.Error(err)
				return
			}
		}
		show := func(args ...string) string {
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				t.Errorf("%v: %v %s", args, err, out)
			}
			return string(out)
		}
		routes := show("ip", "route", "show", "dev", DefaultDevice)
		for _, w := range []string{"10.90.2.0/24 via 10.90.2.0 onlink", "10.90.3.0/24 via 10.90.3.0 onlink"} {
			if !strings.Contains(routes, w) {
				t.Errorf("routes lack %q:\n%s", w, routes)
			}
		}
		if n := show("ip", "neigh", "show", "dev", DefaultDevice); !strings.Contains(n, "10.90.2.0 lladdr 02:00:00:00:00:0b PERMANENT") {
			t.Errorf("ARP entries:\n%s", n)
		}
		if f := show("bridge", "fdb", "show", "dev", DefaultDevice); !strings.Contains(f, "02:00:00:00:00:0b dst 10.219.7.3") {
			t.Errorf("FDB entries:\n%s", f)
		}
		if r := show("iptables", "-t", "nat", "-S", "POSTROUTING"); !strings.Contains(r, "-o "+DefaultDevice) {
			t.Errorf("no masquerade exception:\n%s", r)
		}
		// c leaves, b moves to another address.
		peers[0].Address = netip.MustParseAddr("10.219.7.5")
		if err := v.Sync(peers[:1]); err != nil {
			t.Error(err)
		}
		if r := show("ip", "route", "show", "dev", DefaultDevice); strings.Contains(r, "10.90.3.0") || !strings.Contains(r, "10.90.2.0/24") {
			t.Errorf("routes after c left:\n%s", r)
		}
		if n := show("ip", "neigh", "show", "dev", DefaultDevice); strings.Contains(n, "10.90.3.0") {
			t.Errorf("ARP entry of c left behind:\n%s", n)
		}
		if f := show("bridge", "fdb", "show", "dev", DefaultDevice); strings.Contains(f, "00:0c") || !strings.Contains(f, "02:00:00:00:00:0b dst 10.219.7.5") {
			t.Errorf("FDB after changes:\n%s", f)
		}
		if err := v.Sync([]Peer{{Name: "self", Subnet: netip.MustParsePrefix("10.90.1.0/24"), Address: netip.MustParseAddr("10.219.7.2"), MAC: macB}}); err == nil {
			t.Error("a peer with this node's subnet was accepted")
		}
		if err := Delete(""); err != nil {
			t.Error(err)
		}
		if _, err := netlink.LinkByName(DefaultDevice); err == nil {
			t.Error("device still there after Delete")
		}
		if r := show("iptables", "-t", "nat", "-S", "POSTROUTING"); strings.Contains(r, DefaultDevice) {
			t.Errorf("rule left after Delete:\n%s", r)
		}
	})
}
