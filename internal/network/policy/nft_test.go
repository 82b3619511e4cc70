package policy

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/google/nftables"
)

// lab is a node network namespace with a bridge and workload namespaces
// on it, all removed at cleanup.
type lab struct {
	t      *testing.T
	prefix string
	node   string
}

func newLab(t *testing.T) *lab {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for network namespaces and nftables")
		}
		t.Skip("needs root")
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	l := &lab{t: t, prefix: "berth-test-" + hex.EncodeToString(b)}
	l.node = l.prefix + "-n"
	l.ns(l.node)
	l.ip(l.node, "link", "add", "lab0", "type", "bridge")
	l.ip(l.node, "addr", "add", "10.77.0.1/24", "dev", "lab0")
	l.ip(l.node, "link", "set", "lab0", "up")
	l.ip(l.node, "link", "set", "lo", "up")
	return l
}

// ns creates a network namespace removed at cleanup.
func (l *lab) ns(name string) {
	l.t.Helper()
	l.run("ip", "netns", "add", name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
}

// workload adds a namespace with address addr on the node's bridge.
func (l *lab) workload(name, addr string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.ns(ns)
	l.ip(l.node, "link", "add", "v"+name, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip(l.node, "link", "set", "v"+name, "master", "lab0", "up")
	l.ip(ns, "addr", "add", addr+"/24", "dev", "eth0")
	l.ip(ns, "link", "set", "eth0", "up")
	l.ip(ns, "link", "set", "lo", "up")
	return ns
}

func (l *lab) ip(ns string, args ...string) {
	l.t.Helper()
	l.run("ip", append([]string{"-n", ns}, args...)...)
}

func (l *lab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// reaches pings addr once from ns (bounded by one second).
func (l *lab) reaches(ns, addr string) bool {
	return exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", addr).Run() == nil
}

// applier opens an Applier in the node namespace.
func (l *lab) applier() *Applier {
	l.t.Helper()
	f, err := os.Open("/run/netns/" + l.node)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { f.Close() })
	a, err := NewApplier("", nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { a.Close() })
	return a
}

func TestApplierIsolatesBridgedTraffic(t *testing.T) {
	l := newLab(t)
	a1, a2, b1 := l.workload("a1", "10.77.0.2"), l.workload("a2", "10.77.0.3"), l.workload("b1", "10.77.0.4")
	apps := []model.App{app("a", "x", ""), app("b", "y", "")}
	insts := []model.Instance{inst("a", "x", "n1", "10.77.0.2", model.StateRunning), inst("a", "x", "n1", "10.77.0.3", model.StateRunning),
		inst("b", "y", "n1", "10.77.0.4", model.StateRunning)}
	if !l.reaches(a1, "10.77.0.4") {
		t.Fatal("no connectivity before any policy; the lab is broken")
	}
	ap := l.applier()
	// c1 is on the bridge but not (yet) a known instance: in the range.
	c1 := l.workload("c1", "10.77.0.9")
	in := Input{Node: "n1", Apps: apps, Instances: insts, Ranges: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}}
	if _, err := ap.Apply(Build(in)); err != nil {
		t.Fatal(err)
	}
	check := func(stage string, want map[[2]string]bool) {
		t.Helper()
		for k, ok := range want {
			if got := l.reaches(k[0], k[1]); got != ok {
				t.Errorf("%s: %s → %s reachable=%v, want %v", stage, k[0], k[1], got, ok)
			}
		}
	}
	check("isolated", map[[2]string]bool{
		{a1, "10.77.0.3"}: true, {a2, "10.77.0.2"}: true, // inside network a
		{a1, "10.77.0.4"}: false, {b1, "10.77.0.2"}: false, // across
		{l.node, "10.77.0.4"}: true, {b1, "10.77.0.1"}: true, // host and gateway
		{c1, "10.77.0.2"}: false, // unknown address in the node's range
	})

	if changed, err := ap.Apply(Build(in)); changed || err != nil {
		t.Errorf("Apply of the same ruleset: changed=%v err=%v, want a no-op", changed, err)
	}

	// y grants network a: a → b works (replies too), b → a still not.
	in.Apps[1].Spec.AllowFrom = []model.NetworkPeer{{Network: "a"}}
	if _, err := ap.Apply(Build(in)); err != nil {
		t.Fatal(err)
	}
	check("granted", map[[2]string]bool{{a1, "10.77.0.4"}: true, {a2, "10.77.0.4"}: true, {b1, "10.77.0.2"}: false})

	// The table outlives its applier (a killed berth); a new applier (the
	// restart) replaces it: the grant is gone.
	ap.Close()
	in.Apps[1].Spec.AllowFrom = nil
	ap2 := l.applier()
	if _, err := ap2.Apply(Build(in)); err != nil {
		t.Fatal(err)
	}
	check("after restart", map[[2]string]bool{{a1, "10.77.0.4"}: false, {a1, "10.77.0.3"}: true})
	listed := l.run("ip", "netns", "exec", l.node, "nft", "list", "table", "inet", "berth")
	if n := strings.Count(listed, "hook forward"); n != 1 || strings.Contains(listed, "net.a accept\n\t\t\tip saddr") {
		t.Errorf("want one base chain and no grant after the restart, got %d:\n%s", n, listed)
	}
	if !strings.Contains(listed, "chain to.b.y {\n\t\tip saddr @net.b accept\n\t}") {
		t.Errorf("chain to.b.y should accept only net.b after the restart:\n%s", listed)
	}

	if err := ap2.Remove(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", l.node, "nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), "berth") {
		t.Errorf("table left after Remove: %v\n%s", err, out)
	}
	check("removed", map[[2]string]bool{{b1, "10.77.0.2"}: true})
	if err := ap2.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestApplierLargeSets(t *testing.T) {
	l := newLab(t)
	var insts []model.Instance
	for i := range 3000 {
		ip := "10." + strconv.Itoa(100+i/65536) + "." + strconv.Itoa(i/256%256) + "." + strconv.Itoa(i%256)
		node := "n2"
		if i < 40 {
			node = "n1"
		}
		insts = append(insts, inst("a", "x", node, ip, model.StateRunning))
	}
	r := Build(Input{Node: "n1", Apps: []model.App{app("a", "x", "")}, Instances: insts})
	if len(r.Sources) != 3000 || len(r.Dests) != 40 {
		t.Fatalf("want 3000 sources and 40 local, got %d and %d", len(r.Sources), len(r.Dests))
	}
	ap := l.applier()
	if _, err := ap.Apply(r); err != nil {
		t.Fatal(err)
	}
	out := l.run("ip", "netns", "exec", l.node, "nft", "list", "set", "inet", "berth", "sources")
	if n := strings.Count(out, ","); n != 2999 {
		t.Errorf("sources set has %d elements, want 3000", n+1)
	}
}

func TestApplierTakesOverAStaleTable(t *testing.T) {
	l := newLab(t)
	nft := func(args ...string) string {
		return l.run("ip", append([]string{"netns", "exec", l.node, "nft"}, args...)...)
	}
	// An unowned table, as an older berth or a hand edit leaves it.
	nft("add", "table", "inet", "berth")
	nft("add", "chain", "inet", "berth", "stale", "{ type filter hook forward priority 0; policy drop; }")
	ap := l.applier()
	if _, err := ap.Apply(Build(Input{Node: "n1"})); err != nil {
		t.Fatal(err)
	}
	if out := nft("list", "table", "inet", "berth"); strings.Contains(out, "stale") {
		t.Errorf("stale chain survived:\n%s", out)
	}
}
