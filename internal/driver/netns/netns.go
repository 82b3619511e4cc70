//go:build linux

// Package netns dials connections from inside another process's network
// namespace, so the agent can probe a workload on its own loopback without
// going through published ports (Docker's userland proxy accepts TCP
// connections even when nothing listens behind it).
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dial connects to addr as seen from inside the network namespace of
// process pid. It needs CAP_SYS_ADMIN (berth's agent runs as root).
func Dial(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("netns: workload has no running process")
	}
	return DialPath(ctx, fmt.Sprintf("/proc/%d/ns/net", pid), network, addr)
}

// DialPath connects to addr as seen from inside the network namespace at
// nsPath (a bind mount such as /run/netns/<name>, or /proc/<pid>/ns/net).
// It needs CAP_SYS_ADMIN.
func DialPath(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The socket is created in the namespace of the thread that makes
		// it; once made it stays there, whichever thread uses it later.
		runtime.LockOSThread()
		c, err := dialIn(ctx, nsPath, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// dialIn switches the locked thread into the target namespace, dials, and
// switches back. If switching back fails the thread stays locked and is
// discarded when the goroutine exits, so no other goroutine ever runs in
// the wrong namespace.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("netns: enter namespace %s: %w", nsPath, err)
	}
	var d net.Dialer
	c, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("netns: return to own namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}
