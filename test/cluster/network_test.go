package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// webSpec serves DIR with busybox httpd, one instance per node; its CGI
// cgi-bin/ip answers with the client's address as the server saw it.
const webSpec = `name: %s
driver: process
command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", %q]
instances: %d
constraints: [{field: hostname, op: UNIQUE}]
resources: {cpu: 0.05, memory: 16Mi}
`

// webRoot writes the document root webSpec serves.
func webRoot(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(root, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cgi := "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"from=$REMOTE_ADDR\"\n"
	if err := os.WriteFile(filepath.Join(root, "cgi-bin", "ip"), []byte(cgi), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("hello from berth\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// netnsOf finds the network namespace of the workload holding ip among
// h's node network attachments.
func (c *cluster) netnsOf(h *agentHost, ip netip.Addr) string {
	c.t.Helper()
	files, _ := filepath.Glob(filepath.Join(h.dataDir, "network", "attachments", "*.json"))
	for _, f := range files {
		var rec struct {
			NetNS string     `json:"netns"`
			IP    netip.Addr `json:"ip"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &rec) == nil && rec.IP == ip {
			return rec.NetNS
		}
	}
	c.t.Fatalf("no attachment with address %s on %s", ip, h.name)
	return ""
}

// inNetNS runs busybox with args inside the network namespace netns,
// killed after secs seconds (busybox wget -T crashes in Debian 12's
// busybox, so timeout(1) bounds it).
func inNetNS(netns string, secs int, args ...string) (string, error) {
	cmd := exec.Command("timeout", append([]string{fmt.Sprint(secs), "nsenter", "--net=" + netns, "/bin/busybox"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Two hosts with the node network: each node gets its own subnet of the
// cluster CIDR, instances get addresses in its native half, and an
// instance on one host reaches an instance on the other by IP (ping and
// HTTP) over the VXLAN overlay, keeping its source address. When host B
// loses its link, host A keeps serving locally and keeps its routes;
// once B's link is back, cross-host HTTP works again.
func TestOverlayCrossHost(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatal("/bin/busybox is missing: run scripts/deps.sh")
	}
	c := newClusterNet(t, 2, true, []string{"--cluster-cidr", "10.93.0.0/16", "--node-subnet-size", "24"})
	a, b := c.agents[0], c.agents[1]
	nodes := map[string]model.Node{}
	c.eventually(60*time.Second, func() (bool, string) {
		for _, h := range c.agents {
			n := c.node(h.name)
			if n.Subnet == "" || n.VTEP == nil {
				return false, fmt.Sprintf("node %s: subnet %q vtep %v", h.name, n.Subnet, n.VTEP)
			}
			nodes[h.name] = n
		}
		return true, ""
	})
	cluster := netip.MustParsePrefix("10.93.0.0/16")
	sa, sb := netip.MustParsePrefix(nodes[a.name].Subnet), netip.MustParsePrefix(nodes[b.name].Subnet)
	if sa.Overlaps(sb) || !cluster.Contains(sa.Addr()) || !cluster.Contains(sb.Addr()) || sa.Bits() != 24 {
		t.Fatalf("node subnets %s and %s: want distinct /24s of %s", sa, sb, cluster)
	}

	c.apply(fmt.Sprintf(webSpec, "web", webRoot(t, c.dir), 2))
	by := c.waitRunning("web", 2)
	ips := map[string]netip.Addr{}
	for _, h := range c.agents {
		if len(by[h.name]) != 1 {
			t.Fatalf("want one instance on %s, got %d", h.name, len(by[h.name]))
		}
		ip := by[h.name][0].Status.IP
		native, _, _ := model.NativeSubnet(nodes[h.name].Subnet)
		if !native.Contains(ip) {
			t.Fatalf("instance on %s has %s, outside its node's native subnet %s", h.name, ip, native)
		}
		ips[h.name] = ip
	}
	nsA := c.netnsOf(a, ips[a.name])
	url := func(h *agentHost, path string) string { return fmt.Sprintf("http://%s:8080%s", ips[h.name], path) }
	get := func(u string) (string, error) { return inNetNS(nsA, 5, "wget", "-q", "-O", "-", u) }

	// Cross-host: ping and HTTP by IP, source address kept (no masquerade
	// between node subnets).
	c.eventually(30*time.Second, func() (bool, string) {
		out, err := inNetNS(nsA, 5, "ping", "-c", "1", "-W", "2", ips[b.name].String())
		return err == nil, fmt.Sprintf("ping %s from %s: %v %s", ips[b.name], ips[a.name], err, out)
	})
	// Running is the container's state, not its server's: httpd may take
	// a moment to listen.
	c.eventually(30*time.Second, func() (bool, string) {
		out, err := get(url(b, "/"))
		return err == nil && strings.Contains(out, "hello from berth"), fmt.Sprintf("HTTP from A's instance to B's: %v %s", err, out)
	})
	out, err := get(url(b, "/cgi-bin/ip"))
	from, _ := netip.ParseAddr(strings.Trim(strings.TrimPrefix(strings.TrimSpace(out), "from="), "[]"))
	if err != nil || from.Unmap() != ips[a.name] {
		t.Fatalf("B saw the request from %q (err %v), want %s (source kept)", strings.TrimSpace(out), err, ips[a.name])
	}
	// The bridge fits the overlay: underlay (veth, 1500) - 50.
	if mtu := nodes[a.name].VTEP.MTU; mtu != 1450 {
		t.Errorf("VTEP MTU %d, want 1450 (underlay MTU - 50)", mtu)
	}
	if out, err := exec.Command("ip", "-n", a.netns, "link", "show", "berth0").CombinedOutput(); err != nil || !strings.Contains(string(out), "mtu 1450 ") {
		t.Errorf("bridge MTU, want 1450: %v %s", err, out)
	}

	// Peer loss: B's link goes down. A serves locally, keeps its route.
	c.ip("link", "set", b.veth, "down")
	healed := false
	defer func() {
		if !healed {
			_ = exec.Command("ip", "link", "set", b.veth, "up").Run()
		}
	}()
	if out, err := inNetNS(nsA, 3, "wget", "-q", "-O", "-", url(b, "/")); err == nil {
		t.Fatalf("B answered with its link down: %s", out)
	}
	if out, err := get(url(a, "/")); err != nil || !strings.Contains(out, "hello from berth") {
		t.Fatalf("A's local instance while B is cut off: %v %s", err, out)
	}
	routes, err := exec.Command("ip", "-n", a.netns, "route", "show", "dev", "berth-vx0").CombinedOutput()
	if err != nil || !strings.Contains(string(routes), sb.String()) {
		t.Fatalf("A's route to B's subnet %s while B is cut off: %v %s", sb, err, routes)
	}
	c.ip("link", "set", b.veth, "up")
	healed = true
	c.eventually(60*time.Second, func() (bool, string) {
		by, n := c.running("web")
		if n != 2 || len(by[b.name]) != 1 {
			return false, fmt.Sprintf("%d running", n)
		}
		ip := by[b.name][0].Status.IP
		out, err := inNetNS(nsA, 3, "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:8080/", ip))
		return err == nil && strings.Contains(out, "hello from berth"), fmt.Sprintf("HTTP to %s after heal: %v %s", ip, err, out)
	})

	// The subnet is server-owned: B's agent cannot change it; a VTEP
	// peers could not use is refused.
	ctx := context.Background()
	sB := agentStore(t, c, b)
	if _, err := store.Update(ctx, sB, model.NodeKey(b.name), func(n *model.Node) error { n.Subnet = "10.93.200.0/24"; return nil }); err != nil {
		t.Fatalf("B writing its node: %v", err)
	}
	if got := c.node(b.name).Subnet; got != sb.String() {
		t.Fatalf("B changed its subnet to %s", got)
	}
	if _, err := store.Update(ctx, sB, model.NodeKey(b.name), func(n *model.Node) error { n.VTEP = &model.VTEP{MAC: "nope"}; return nil }); err == nil ||
		!strings.Contains(err.Error(), "vtep.mac") {
		t.Fatalf("B writing a bad VTEP: %v, want an error naming vtep.mac", err)
	}

	// B's agent restarts: same subnet, same VTEP, traffic flows again.
	mac := c.node(b.name).VTEP.MAC
	b.proc.stop(syscall.SIGTERM)
	c.startAgent(b, "")
	c.eventually(60*time.Second, func() (bool, string) {
		n := c.node(b.name)
		if n.Subnet != sb.String() || n.VTEP == nil || n.VTEP.MAC != mac {
			return false, fmt.Sprintf("after restart: subnet %s vtep %+v, want %s %s", n.Subnet, n.VTEP, sb, mac)
		}
		by, _ := c.running("web")
		if len(by[b.name]) != 1 {
			return false, "instance on B not running"
		}
		out, err := get(fmt.Sprintf("http://%s:8080/", by[b.name][0].Status.IP))
		return err == nil && strings.Contains(out, "hello from berth"), fmt.Sprintf("HTTP after B restarted: %v %s", err, out)
	})

	// berth node rm B: its subnet is released and A drops its routes.
	b.proc.stop(syscall.SIGKILL)
	if err := c.c.RemoveNode(ctx, b.name); err != nil {
		t.Fatal(err)
	}
	c.eventually(30*time.Second, func() (bool, string) {
		routes, _ := exec.Command("ip", "-n", a.netns, "route", "show", "dev", "berth-vx0").CombinedOutput()
		kvs, _, err := c.adminStore(t).List(ctx, model.SubnetKey(sb.String()))
		return err == nil && len(kvs) == 0 && !strings.Contains(string(routes), sb.String()),
			fmt.Sprintf("allocation %d (%v), A's overlay routes: %s", len(kvs), err, routes)
	})
}
