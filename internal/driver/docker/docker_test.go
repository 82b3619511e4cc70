package docker

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
)

const testImage = "berth-test/busybox:latest"

// newTestDriver returns a driver on the local engine, building the test
// image first. Without Docker it skips, except under CI=true where it fails.
func newTestDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(Options{Node: "berth-test-node", DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}})
	if err == nil {
		err = d.Available(context.Background())
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker is required in CI: %v", err)
		}
		t.Skipf("Docker unavailable: %v", err)
	}
	buildImage(t)
	t.Cleanup(func() { d.Close() })
	return d
}

func buildImage(t *testing.T) {
	t.Helper()
	out, err := exec.Command("bash", "../../../scripts/test-image.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/test-image.sh: %v\n%s", err, out)
	}
}

func TestConformance(t *testing.T) {
	d := newTestDriver(t)
	drivertest.Run(t, drivertest.Harness{
		New:      func(*testing.T) driver.Driver { return d },
		Image:    testImage,
		Programs: drivertest.ShellPrograms,
		Labels:   map[string]string{"berth.test": "1"},
		FreePort: drivertest.FreeTCPPort,
		Caps:     drivertest.Capabilities{PublishedPorts: true, Exec: true, Pull: true, InsideDial: true},
	})
}

// TestLimitsAndSecurityDefaults checks what the engine was asked for.
func TestLimitsAndSecurityDefaults(t *testing.T) {
	d := newTestDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := d.Start(ctx, driver.Task{InstanceID: "berth-test-limits", App: "limits", Namespace: "default",
		Image: testImage, Command: []string{"sleep", "600"}, CPUMilli: 250, MemoryBytes: 64 << 20,
		Labels: map[string]string{"berth.test": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove(context.Background(), id)
	c, err := d.c.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HostConfig
	if hc.NanoCPUs != 250_000_000 || hc.Memory != 64<<20 {
		t.Errorf("limits: NanoCPUs %d Memory %d", hc.NanoCPUs, hc.Memory)
	}
	if hc.Privileged || len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" {
		t.Errorf("capabilities: privileged %v drop %v", hc.Privileged, hc.CapDrop)
	}
	noNewPriv := false
	for _, o := range hc.SecurityOpt {
		noNewPriv = noNewPriv || o == "no-new-privileges:true"
	}
	if !noNewPriv {
		t.Errorf("security opts %v lack no-new-privileges", hc.SecurityOpt)
	}
	if hc.RestartPolicy.Name != "no" {
		t.Errorf("docker restart policy %q, want no (the agent restarts)", hc.RestartPolicy.Name)
	}
	if len(hc.DNS) != 1 || hc.DNS[0] != "192.0.2.53" || len(hc.DNSSearch) != 2 || hc.DNSSearch[0] != "default.berth" {
		t.Errorf("DNS %v search %v, want the node DNS and default.berth, berth", hc.DNS, hc.DNSSearch)
	}
	st, err := d.Inspect(ctx, id)
	if err != nil || !st.IP.IsValid() || c.NetworkSettings.Networks["bridge"] == nil ||
		st.IP.String() != c.NetworkSettings.Networks["bridge"].IPAddress {
		t.Errorf("Inspect IP = %v (%v), want the container's bridge address", st.IP, err)
	}
	if c.Name != "/berth-berth-test-limits" || c.Config.Labels[driver.LabelNode] != "berth-test-node" {
		t.Errorf("name %q labels %v", c.Name, c.Config.Labels)
	}
}
