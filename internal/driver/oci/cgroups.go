//go:build linux

package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// hybridMu serialises ensureHybridCgroups.
var hybridMu sync.Mutex

// ensureHybridCgroups prepares a hybrid cgroup host (v1 controllers plus
// a cgroup2 mount at /sys/fs/cgroup/unified) for crun, which refuses to
// run while any controller is attached to the cgroup2 hierarchy there
// ("cgroups in hybrid mode not supported, drop all controllers from
// cgroupv2"). Such controllers (typically hugetlb, which systemd leaves
// unmounted on v1) are mounted as v1 hierarchies under /sys/fs/cgroup,
// which moves them off cgroup2 — the same as
// `mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`. Pure v1 and
// pure v2 hosts need nothing.
func ensureHybridCgroups() error {
	return moveHybridControllers("/sys/fs/cgroup", func(dir, controller string) error {
		return unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, controller)
	})
}

// moveHybridControllers mounts each controller listed in
// <root>/unified/cgroup.controllers as a v1 hierarchy at <root>/<name>.
func moveHybridControllers(root string, mount func(dir, controller string) error) error {
	hybridMu.Lock()
	defer hybridMu.Unlock()
	b, err := os.ReadFile(filepath.Join(root, "unified", "cgroup.controllers"))
	if err != nil {
		return nil // not hybrid
	}
	for _, c := range strings.Fields(string(b)) {
		dir := filepath.Join(root, c)
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			err = mount(dir, c)
		}
		if err != nil {
			return fmt.Errorf("crun cannot run on this host: the %s cgroup controller is attached to cgroup v2 in a hybrid setup, "+
				"and mounting it as v1 failed (%v); run `mount -t cgroup -o %s cgroup %s` or use runc", c, err, c, dir)
		}
	}
	return nil
}

// swapAccounting reports whether memory+swap limits can be set: on cgroup
// v1 the memsw files exist (the kernel's swap accounting is on); cgroup v2
// has memory.swap.max wherever the memory controller is.
func swapAccounting() bool {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}
