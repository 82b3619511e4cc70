//go:build linux

package process

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
	"github.com/berth-dev/berth/internal/network/cni"
	"github.com/berth-dev/berth/internal/network/cni/cnitest"
)

// newCNI makes a node network of its own in 10.214.x.0/24, removed at
// cleanup.
func newCNI(t *testing.T) *cni.Network { return cnitest.New(t, 214) }

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
	if st, err := d.Inspect(ctx(t), id); err != nil || st.IP != att.IP {
		t.Errorf("Inspect IP = %v %v, want the attachment's %v", st.IP, err, att.IP)
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
