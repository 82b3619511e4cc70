package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
)

// testNetwork is a berth network no other test uses: a random name and
// the docker half of a random /24 of 10.217.0.0/16. It is removed at the
// end of the test.
func testNetwork(t *testing.T, d *Driver) *Network {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	n, err := NetworkFor("berth-test-"+hex.EncodeToString(b[:]), fmt.Sprintf("10.217.%d.0/24", b[0]))
	if err != nil {
		t.Fatal(err)
	}
	n.Labels = map[string]string{"berth.test": "1"}
	t.Cleanup(func() { _ = d.c.NetworkRemove(context.Background(), n.Name) })
	return n
}

// withNetwork is a driver like d attached to network n.
func withNetwork(d *Driver, n *Network) *Driver {
	n.DNS = []netip.Addr{n.Gateway}
	return &Driver{c: d.c, node: d.node, dns: d.dns, net: n}
}

// Everything the conformance suite checks holds on the berth network too,
// published ports included.
func TestConformanceOnBerthNetwork(t *testing.T) {
	base := newTestDriver(t)
	d := withNetwork(base, testNetwork(t, base))
	drivertest.Run(t, drivertest.Harness{
		New:      func(*testing.T) driver.Driver { return d },
		Image:    testImage,
		Programs: drivertest.ShellPrograms,
		Labels:   map[string]string{"berth.test": "1"},
		FreePort: drivertest.FreeTCPPort,
		Caps:     drivertest.Capabilities{PublishedPorts: true, Exec: true, InsideDial: true},
	})
}

// The network is created with the docker half of the node subnet, the
// container gets an address in it, resolves through the gateway, and the
// network is recreated when its subnet changed and nothing uses it.
func TestBerthNetworkAddressAndRecreate(t *testing.T) {
	base := newTestDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := testNetwork(t, base)
	// A stale berth network of the same name with another subnet.
	if _, err := base.c.NetworkCreate(ctx, n.Name, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{LabelNetworkManaged: "1", "berth.test": "1"},
		IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.216.250.0/24"}}}}); err != nil {
		t.Fatal(err)
	}
	// The network comes from NetworkFrom, as on an agent.
	d := withNetwork(base, n)
	d.net, d.netFrom = nil, func(context.Context) (*Network, error) { return n, nil }
	id, err := d.Start(ctx, driver.Task{InstanceID: "berth-test-net-" + n.Name[len("berth-test-"):], App: "net", Namespace: "shop",
		Image: testImage, Command: []string{"sleep", "600"}, Labels: map[string]string{"berth.test": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove(context.Background(), id)
	st, err := d.Inspect(ctx, id)
	if err != nil || !n.Subnet.Contains(st.IP) || st.IP == n.Gateway {
		t.Fatalf("Inspect IP %v (%v), want an address of %s", st.IP, err, n.Subnet)
	}
	c, err := d.c.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.HostConfig.NetworkMode) != n.Name || len(c.HostConfig.DNS) != 1 || c.HostConfig.DNS[0] != n.Gateway.String() {
		t.Errorf("network mode %q DNS %v, want %s and %s", c.HostConfig.NetworkMode, c.HostConfig.DNS, n.Name, n.Gateway)
	}
	got, err := d.c.NetworkInspect(ctx, n.Name, network.InspectOptions{})
	if err != nil || !sameIPAM(got, n) || got.Labels[LabelNetworkManaged] != "1" {
		t.Fatalf("network %+v (%v), want subnet %s gateway %s, managed", got.IPAM, err, n.Subnet, n.Gateway)
	}
	// In use with another wanted subnet: refused, naming the container.
	other := *n
	other.Subnet, other.Gateway = netip.MustParsePrefix("10.216.251.128/25"), netip.MustParseAddr("10.216.251.129")
	d2 := withNetwork(base, &other)
	if _, err := d2.ensureNetwork(ctx); err == nil || !strings.Contains(err.Error(), "containers still use it") ||
		!strings.Contains(err.Error(), ContainerName("berth-test-net-"+n.Name[len("berth-test-"):])) {
		t.Fatalf("subnet change while in use: %v", err)
	}
}

// A foreign network with berth's name, or one whose subnet overlaps, is a
// clear error naming it.
func TestBerthNetworkConflicts(t *testing.T) {
	base := newTestDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := testNetwork(t, base)
	if _, err := base.c.NetworkCreate(ctx, n.Name, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{"berth.test": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := withNetwork(base, n).ensureNetwork(ctx); err == nil || !strings.Contains(err.Error(), "is not berth's") {
		t.Fatalf("foreign network of the same name: %v", err)
	}
	_ = base.c.NetworkRemove(ctx, n.Name)

	squatter := testNetwork(t, base)
	if _, err := base.c.NetworkCreate(ctx, squatter.Name, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{"berth.test": "1"},
		IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: n.Subnet.String()}}}}); err != nil {
		t.Fatal(err)
	}
	_, err := withNetwork(base, n).ensureNetwork(ctx)
	if err == nil || !strings.Contains(err.Error(), "conflicts with docker network "+squatter.Name) {
		t.Fatalf("overlapping subnet: %v", err)
	}
}

func TestNetworkFor(t *testing.T) {
	n, err := NetworkFor("", "10.90.3.0/24")
	if err != nil || n.name() != DefaultNetworkName || n.Subnet.String() != "10.90.3.128/25" || n.Gateway.String() != "10.90.3.129" {
		t.Fatalf("NetworkFor = %+v %v", n, err)
	}
	if _, err := NetworkFor("bad name", "10.90.3.0/24"); err == nil || !strings.Contains(err.Error(), "docker network name") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := NetworkFor("berth", "10.90.3.7/24"); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("bad subnet: %v", err)
	}
}
