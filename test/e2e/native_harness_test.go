package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/oci"
	"github.com/berth-dev/berth/internal/driver/process"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/network/cni"
)

// subnetSeq spreads the test berths' node networks over 10.218.0.0/16.
var subnetSeq atomic.Uint32

func init() {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	subnetSeq.Store(uint32(b[0]))
}

// testSubnet returns a /24 no other berth of this test run uses.
func testSubnet() string {
	return fmt.Sprintf("10.218.%d.0/24", subnetSeq.Add(1)%256)
}

// removeApps deletes every app of a running berth and waits until their
// instances are gone, so workloads are stopped the way users stop them.
func (b *berth) removeApps() {
	if b.c == nil || b.cmd == nil || b.cmd.ProcessState != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	apps, err := b.c.ListApps(ctx, "", true)
	if err != nil {
		return
	}
	for _, a := range apps {
		_ = b.c.DeleteApp(ctx, a.Namespace, a.Name)
	}
	for ctx.Err() == nil {
		left, err := b.c.ListApps(ctx, "", true)
		if err != nil || len(left) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Errorf("cleanup: apps still present after 90s")
}

// purgeNative removes the oci and process workloads berth left (a test
// that killed it), its node network and every mount below its data dir,
// using berth's own drivers over the same state.
func (b *berth) purgeNative() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	subnet, _ := netip.ParsePrefix(b.subnet)
	net, err := cni.New(cni.Options{StateDir: filepath.Join(b.dataDir, "network"), BridgeName: b.bridge, Subnet: subnet})
	if err != nil {
		b.t.Errorf("cleanup: node network: %v", err)
	}
	var drivers []driver.Driver
	if _, err := os.Stat(filepath.Join(b.dataDir, "process")); err == nil && net != nil {
		drivers = append(drivers, process.New(process.Options{StateDir: filepath.Join(b.dataDir, "process"), Network: net}))
	}
	if _, err := os.Stat(filepath.Join(b.dataDir, "images")); err == nil && net != nil {
		if imgs, err := image.Open(filepath.Join(b.dataDir, "images"), image.Options{}); err != nil {
			b.t.Errorf("cleanup: image store: %v", err)
		} else {
			defer imgs.Close()
			if d, err := oci.New(oci.Options{StateDir: filepath.Join(b.dataDir, "oci"), RootFS: imgs, Network: net}); err == nil {
				drivers = append(drivers, d)
			}
		}
	}
	for _, d := range drivers {
		list, _ := d.List(ctx)
		for _, w := range list {
			if err := d.Remove(ctx, w.ID); err != nil {
				b.t.Errorf("cleanup: remove %s workload %s: %v", d.Name(), w.ID, err)
			}
		}
	}
	if net != nil {
		ids, _ := net.List(ctx)
		for _, id := range ids {
			_ = net.Detach(ctx, id)
		}
	}
	unmountBelow(b.dataDir)
	_ = exec.Command("ip", "link", "del", b.bridge).Run()
	_ = exec.Command("nft", "delete", "table", "inet", "berth-"+b.bridge).Run() // isolation, left by a kill
}

// unmountBelow detaches every mount below dir, deepest first.
func unmountBelow(dir string) {
	for _, m := range mountsBelow(dir) {
		_ = exec.Command("umount", "-l", m).Run()
	}
}

// mountsBelow lists mount points below dir, deepest first.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}
