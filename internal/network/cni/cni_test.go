//go:build linux

package cni

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/driver"
)

func tcp(container, host int) []driver.PortBinding {
	return []driver.PortBinding{{Name: "http", ContainerPort: container, HostPort: host, Protocol: "tcp"}}
}

// Two workloads get distinct addresses in the subnet, reach each other by
// IP, and a published port answers on 127.0.0.1 on the host.
func TestAttachTrafficAndLocalhostPort(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()
	idA, idB := "berth-test-a-"+randHex(t, 3), "berth-test-b-"+randHex(t, 3)
	hostPort := freePort(t)

	a, err := e.net.Attach(ctx, idA, tcp(8080, hostPort))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.net.Attach(ctx, idB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !e.opts.Subnet.Contains(a.IP) || !e.opts.Subnet.Contains(b.IP) || a.IP == b.IP {
		t.Fatalf("addresses %v and %v: want distinct addresses in %v", a.IP, b.IP, e.opts.Subnet)
	}
	if a.Gateway != gatewayFor(e.opts.Subnet) || a.IP == a.Gateway {
		t.Fatalf("gateway %v, want %v (ip %v)", a.Gateway, gatewayFor(e.opts.Subnet), a.IP)
	}
	if a.NetNS != e.net.NetNSPath(idA) || !isNetNS(a.NetNS) || !isNetNS(b.NetNS) {
		t.Fatalf("netns %q / %q are not mounted namespaces", a.NetNS, b.NetNS)
	}
	if len(a.Ports) != 1 || a.Ports[0].HostPort != hostPort {
		t.Fatalf("ports = %+v", a.Ports)
	}

	serveIn(t, a.NetNS, 8080, "hello from a")
	serveIn(t, b.NetNS, 80, "hello from b")

	// Workload to workload, by IP, across the bridge.
	if body, err := get(t, a.NetNS, "http://"+b.IP.String()+":80/"); err != nil || body != "hello from b" {
		t.Fatalf("a → b: %q, %v", body, err)
	}
	// The workload's own loopback is up.
	if body, err := get(t, a.NetNS, "http://127.0.0.1:8080/"); err != nil || body != "hello from a" {
		t.Fatalf("a → its own 127.0.0.1: %q, %v", body, err)
	}
	// Host to the published port on localhost (portmap DNAT + route_localnet).
	if body, err := get(t, "", "http://127.0.0.1:"+strconv.Itoa(hostPort)+"/"); err != nil || body != "hello from a" {
		t.Fatalf("host 127.0.0.1:%d → a: %q, %v", hostPort, body, err)
	}
	// Host to the workload's address.
	if body, err := get(t, "", "http://"+a.IP.String()+":8080/"); err != nil || body != "hello from a" {
		t.Fatalf("host → a by IP: %q, %v", body, err)
	}
	// b reaches a's published port on the node's address (the gateway).
	if body, err := get(t, b.NetNS, "http://"+a.Gateway.String()+":"+strconv.Itoa(hostPort)+"/"); err != nil || body != "hello from a" {
		t.Fatalf("b → gateway:%d → a: %q, %v", hostPort, body, err)
	}
	// a reaches itself through its own published port (hairpin).
	if body, err := get(t, a.NetNS, "http://"+a.Gateway.String()+":"+strconv.Itoa(hostPort)+"/"); err != nil || body != "hello from a" {
		t.Fatalf("a → gateway:%d → a (hairpin): %q, %v", hostPort, body, err)
	}

	// Idempotent Attach returns the same attachment.
	again, err := e.net.Attach(ctx, idA, nil)
	if err != nil || again.IP != a.IP || again.NetNS != a.NetNS || len(again.Ports) != 1 {
		t.Fatalf("second Attach = %+v, %v; want %+v", again, err, a)
	}
	got, ok, err := e.net.Get(ctx, idA)
	if err != nil || !ok || got.IP != a.IP {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}

	// Positive controls for the leftovers check below.
	if len(iptablesMentions(t, a.IP, hostPort, idA)) == 0 || len(e.leasesFor(idA)) == 0 {
		t.Fatalf("no iptables rule or lease found for the live attachment %s", idA)
	}
	for _, id := range []string{idA, idB} {
		if err := e.net.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.assertGone(idA, a.IP, hostPort)
	e.assertGone(idB, b.IP, 0)
	if _, err := get(t, "", "http://127.0.0.1:"+strconv.Itoa(hostPort)+"/"); err == nil {
		t.Fatalf("host port %d still answers after Detach", hostPort)
	}
	// Detaching again, or an unknown id, is fine.
	if err := e.net.Detach(ctx, idA); err != nil {
		t.Fatal(err)
	}
}

// A host port published for one workload is refused for another, naming
// the port and the owner, and the refused Attach leaves nothing behind.
func TestPortConflictBetweenAttachments(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()
	idA, idB := "berth-test-a-"+randHex(t, 3), "berth-test-b-"+randHex(t, 3)
	p1, p2 := freePort(t), freePort(t)
	if _, err := e.net.Attach(ctx, idA, tcp(80, p1)); err != nil {
		t.Fatal(err)
	}
	// p2 is free, p1 is taken: the claim on p2 must be rolled back too.
	_, err := e.net.Attach(ctx, idB, []driver.PortBinding{
		{Name: "a", ContainerPort: 81, HostPort: p2, Protocol: "tcp"},
		{Name: "b", ContainerPort: 80, HostPort: p1, Protocol: "tcp"},
	})
	want := fmt.Sprintf("host port %d/tcp is already allocated", p1)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), idA) {
		t.Fatalf("Attach with a taken port: err = %v, want %q naming %s", err, want, idA)
	}
	e.assertGone(idB, netipInvalid, p2)
	// The same port over udp is a different port.
	if _, err := e.net.Attach(ctx, idB, []driver.PortBinding{{ContainerPort: 80, HostPort: p1, Protocol: "udp"}}); err != nil {
		t.Fatalf("udp on a tcp-published port: %v", err)
	}
}

// A port bound by a plain process on the host is refused before any CNI
// call, whether it listens on 127.0.0.1 or on all addresses.
func TestPortHeldByHostProcess(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()
	for _, addr := range []string{"127.0.0.1:0", "0.0.0.0:0", "[::]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("skip %s: %v", addr, err)
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		id := "berth-test-h-" + randHex(t, 3)
		_, err = e.net.Attach(ctx, id, tcp(80, port))
		l.Close()
		want := fmt.Sprintf("host port %d/tcp is already allocated", port)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("listener on %s: Attach err = %v, want %q", addr, err, want)
		}
		e.assertGone(id, netipInvalid, port)
	}
	// A held udp port too.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	id := "berth-test-u-" + randHex(t, 3)
	_, err = e.net.Attach(ctx, id, []driver.PortBinding{{ContainerPort: 53, HostPort: port, Protocol: "udp"}})
	if want := fmt.Sprintf("host port %d/udp is already allocated", port); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("udp: err = %v, want %q", err, want)
	}
	e.assertGone(id, netipInvalid, port)
}

// A new Network over the same StateDir (agent restart) knows the
// attachment and its claims, and Detach cleans everything; the released
// address is handed out again.
func TestRestartThenDetachReleasesAddress(t *testing.T) {
	// A /30 has exactly one address for workloads, so reuse is visible.
	e := newTestEnv(t, 30)
	ctx := context.Background()
	id, other := "berth-test-r-"+randHex(t, 3), "berth-test-o-"+randHex(t, 3)
	hostPort := freePort(t)
	a, err := e.net.Attach(ctx, id, tcp(8080, hostPort))
	if err != nil {
		t.Fatal(err)
	}
	serveIn(t, a.NetNS, 8080, "still here")

	// The subnet is full: the CNI ADD fails and is rolled back completely.
	if _, err := e.net.Attach(ctx, other, nil); err == nil {
		t.Fatal("Attach in a full subnet succeeded")
	}
	e.assertGone(other, netipInvalid, 0)

	n2, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := n2.Get(ctx, id)
	if err != nil || !ok || got.IP != a.IP || got.NetNS != a.NetNS || len(got.Ports) != 1 || got.Ports[0].HostPort != hostPort {
		t.Fatalf("Get after restart = %+v, %v, %v; want %+v", got, ok, err, a)
	}
	if body, err := get(t, "", "http://127.0.0.1:"+strconv.Itoa(hostPort)+"/"); err != nil || body != "still here" {
		t.Fatalf("published port after restart: %q, %v", body, err)
	}
	if _, err := n2.Attach(ctx, other, tcp(80, hostPort)); err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("conflict after restart: err = %v, want one naming %s", err, id)
	}
	e.net = n2
	if err := n2.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id, a.IP, hostPort)

	b, err := n2.Attach(ctx, other, tcp(8080, hostPort))
	if err != nil {
		t.Fatalf("Attach after Detach: %v", err)
	}
	if b.IP != a.IP {
		t.Fatalf("address %v was not reused (got %v)", a.IP, b.IP)
	}
}

// Detach cleans up after a crash at any point of Attach; Attach of such
// an id starts over.
func TestHalfMadeAttachment(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()

	// Crash after the claims and the namespace, before CNI ADD ran.
	id := "berth-test-c-" + randHex(t, 3)
	port := freePort(t)
	r := record{Phase: phaseAttaching, CNIAdded: true}
	r.ID, r.NetNS, r.Ports = id, e.net.NetNSPath(id), tcp(80, port)
	if err := e.net.store.save(r); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.net.store.claim(hostPort{port, "tcp"}, id); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := createNetNS(r.NetNS); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.net.Get(ctx, id); ok {
		t.Fatal("Get returned a half-made attachment")
	}
	n2, err := New(e.opts) // restart keeps the claim: its owner has a record
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id, netipInvalid, port)

	// Crash after CNI ADD, before the record said ready.
	a, err := e.net.Attach(ctx, id, tcp(80, port))
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ = e.net.store.load(id)
	r.Phase = phaseAttaching
	if err := e.net.store.save(r); err != nil {
		t.Fatal(err)
	}
	// Attach again redoes it from scratch.
	b, err := e.net.Attach(ctx, id, tcp(80, port))
	if err != nil {
		t.Fatal(err)
	}
	if l := e.leasesFor(id); len(l) != 1 {
		t.Fatalf("leases after redo: %v, want exactly one", l)
	}
	r, _, _ = e.net.store.load(id)
	r.Phase = phaseAttaching
	e.net.store.save(r)
	if err := e.net.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id, a.IP, port)
	e.assertGone(id, b.IP, port)

	// The namespace vanished (a reboot empties /run/netns): Detach still
	// releases the address and removes the rules.
	c, err := e.net.Attach(ctx, id, tcp(80, port))
	if err != nil {
		t.Fatal(err)
	}
	if err := removeNetNS(c.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := e.net.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id, c.IP, port)

	// A namespace file that was created but never mounted.
	id2 := "berth-test-d-" + randHex(t, 3)
	r2 := record{Phase: phaseAttaching}
	r2.ID, r2.NetNS = id2, e.net.NetNSPath(id2)
	e.net.store.save(r2)
	os.MkdirAll(e.opts.NetNSDir, 0o755)
	os.WriteFile(r2.NetNS, nil, 0o444)
	if err := e.net.Detach(ctx, id2); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id2, netipInvalid, 0)
}

// Many workloads attaching and detaching at once get distinct addresses
// and ports, and all is cleaned up.
func TestConcurrentAttachDetach(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()
	const n = 8
	ids := make([]string, n)
	atts := make([]struct {
		ip   string
		port int
	}, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		ids[i] = fmt.Sprintf("berth-test-%d-%s", i, randHex(t, 3))
		wg.Add(1)
		go func() {
			defer wg.Done()
			// HostPort 0: the network picks a free port.
			a, err := e.net.Attach(ctx, ids[i], tcp(80, 0))
			errs[i] = err
			if err == nil {
				atts[i].ip, atts[i].port = a.IP.String(), a.Ports[0].HostPort
			}
		}()
	}
	wg.Wait()
	ips, ports := map[string]bool{}, map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Attach %s: %v", ids[i], errs[i])
		}
		if ips[atts[i].ip] || ports[atts[i].port] || atts[i].port == 0 {
			t.Fatalf("duplicate or missing address/port: %+v", atts)
		}
		ips[atts[i].ip], ports[atts[i].port] = true, true
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.net.Detach(ctx, ids[i])
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Detach %s: %v", ids[i], errs[i])
		}
		e.assertGone(ids[i], mustAddr(atts[i].ip), atts[i].port)
	}
}

// TestDetachAfterSandboxTookAddresses: gVisor's netstack takes the veth's
// addresses out of the namespace, so the bridge plugin's DEL finds none
// to clean; Detach still removes the masquerade rule and chain.
func TestDetachAfterSandboxTookAddresses(t *testing.T) {
	e := newTestEnv(t, 24)
	ctx := context.Background()
	id := "berth-test-s-" + randHex(t, 3)
	port := freePort(t)
	a, err := e.net.Attach(ctx, id, tcp(80, port))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nsenter", "--net="+a.NetNS, "ip", "addr", "flush", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("flush addresses: %v\n%s", err, out)
	}
	if err := e.net.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertGone(id, a.IP, port)
}
