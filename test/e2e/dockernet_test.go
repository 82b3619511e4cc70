package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/berth-dev/berth/internal/model"
)

// peerLoop is a shell loop that, every 500ms, looks up %[1]s (through
// name server %[2]s when given, else the resolv.conf) and prints the
// address found (LOOKUP) and what its port 8080 answers (HTTP). Server
// lines of nslookup's output (…:53) are skipped.
const peerLoop = `while true; do ip=$(nslookup %[1]s %[2]s 2>&1 | awk '/^Address/{print $2}' | grep -v ':53$' | head -1); echo "LOOKUP $ip"; echo "HTTP $(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $ip 8080 2>&1 | tail -1)"; sleep 0.5; done`

// dockerPeerSpec is a docker app serving "docker-hello" on 8080 (a
// published port) that looks up and fetches from another app.
const dockerPeerSpec = `name: %[1]s
image: berth-test/busybox:latest
command:
- sh
- -c
- |
  mkdir -p /www && echo docker-hello > /www/index.html
  httpd -f -p 8080 -h /www &
  %[2]s
resources: {cpu: 0.1, memory: 32Mi}
ports: [{name: http, containerPort: 8080}]
health: {tcp: {port: http}, interval: 1s}
stopGracePeriod: 1s
`

// processPeerSpec is a process app in its own netns on the node network
// serving "process-hello" on 8080 that looks up (through node DNS on the
// node network's gateway: host processes read the host's resolv.conf)
// and fetches from another app.
const processPeerSpec = `name: %[1]s
driver: process
command:
- /bin/busybox
- sh
- -c
- |
  mkdir -p %[2]s && echo process-hello > %[2]s/index.html
  /bin/busybox httpd -f -p 8080 -h %[2]s &
  %[3]s
resources: {cpu: 0.1, memory: 32Mi}
ports: [{name: http, containerPort: 8080}]
health: {tcp: {port: http}, interval: 1s}
stopGracePeriod: 1s
`

// TestDockerNetwork: docker containers of `berth up` run on the berth
// Docker network (the docker half of the node's subnet) with published
// ports; a docker container and a process instance on the node network
// find each other through node DNS and talk by address both ways.
func TestDockerNetwork(t *testing.T) {
	b := startBerth(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dock, proc := "dock-"+randHex(3), "proc-"+randHex(3)
	gw := netip.MustParsePrefix(b.subnet).Addr().Next() // node DNS on the node network

	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(processPeerSpec, proc, t.TempDir(),
		fmt.Sprintf(peerLoop, dock+".default.berth", gw))), "--wait", "--timeout", "2m")
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(dockerPeerSpec, dock, fmt.Sprintf(peerLoop, proc, ""))),
		"--wait", "--timeout", "2m")

	node, err := b.c.Node(ctx, b.node)
	if err != nil {
		t.Fatal(err)
	}
	if node.Subnet != b.cluster {
		t.Fatalf("node subnet %q, want %s (--cluster-cidr)", node.Subnet, b.cluster)
	}
	half, dgw, err := model.DockerSubnet(node.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	net, err := b.docker.NetworkInspect(ctx, b.bridge, network.InspectOptions{})
	if err != nil {
		t.Fatalf("berth Docker network %s: %v", b.bridge, err)
	}
	if net.Labels["berth.managed"] != "1" || len(net.IPAM.Config) != 1 || net.IPAM.Config[0].Subnet != half.String() ||
		net.IPAM.Config[0].Gateway != dgw.String() {
		t.Fatalf("network %s: labels %v IPAM %+v, want berth.managed=1, %s via %s", b.bridge, net.Labels, net.IPAM.Config, half, dgw)
	}
	d, p := b.instances(dock), b.instances(proc)
	if len(d) != 1 || len(p) != 1 {
		t.Fatalf("instances: %d docker, %d process", len(d), len(p))
	}
	dip, pip := d[0].Status.IP, p[0].Status.IP
	if !half.Contains(dip) || dip == dgw {
		t.Fatalf("docker instance address %v, want one of %s", dip, half)
	}
	if !netip.MustParsePrefix(b.subnet).Contains(pip) {
		t.Fatalf("process instance address %v, want one of the node network %s", pip, b.subnet)
	}
	if body := get(t, d[0].HostPorts["http"]); strings.TrimSpace(body) != "docker-hello" {
		t.Fatalf("published port %d of the docker app served %q", d[0].HostPorts["http"], body)
	}

	// Each resolves the other by name and fetches from its address.
	for _, c := range []struct{ app, peerIP, peerBody string }{
		{dock, pip.String(), "process-hello"},
		{proc, dip.String(), "docker-hello"},
	} {
		var logs string
		eventually(t, 90*time.Second, c.app+" to resolve and reach its peer at "+c.peerIP, func() bool {
			logs, _ = b.cli("logs", c.app, "--tail", "20")
			return lastLine(logs, "LOOKUP ") == "LOOKUP "+c.peerIP && lastLine(logs, "HTTP ") == "HTTP "+c.peerBody
		})
	}
	c, err := b.docker.ContainerInspect(ctx, b.containers(dock)[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.HostConfig.NetworkMode) != b.bridge || len(c.HostConfig.DNS) != 1 || c.HostConfig.DNS[0] != dgw.String() ||
		!strings.Contains(strings.Join(c.HostConfig.DNSSearch, " "), "default.berth") {
		t.Errorf("container network %q DNS %v search %v; want %s, node DNS on %s", c.HostConfig.NetworkMode,
			c.HostConfig.DNS, c.HostConfig.DNSSearch, b.bridge, dgw)
	}
}
