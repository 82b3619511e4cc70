//go:build linux

package netns

import (
	"fmt"
	"net"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDialPath listens on loopback inside a fresh network namespace (held
// by a locked thread) and dials it through the namespace's path.
func TestDialPath(t *testing.T) {
	type ready struct {
		path string
		l    net.Listener
		err  error
	}
	ch := make(chan ready, 1)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		// The thread never unlocks: it dies with the goroutine, and the
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- ready{err: err}
			return
		}
		err := setLoUp()
		var l net.Listener
		if err == nil {
			l, err = net.Listen("tcp", "127.0.0.1:0")
		}
		ch <- ready{path: fmt.Sprintf("/proc/%d/task/%d/ns/net", unix.Getpid(), unix.Gettid()), l: l, err: err}
		<-stop
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("make a test namespace: %v", r.err)
	}
	defer r.l.Close()
	go func() {
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inside\n"))
			c.Close()
		}
	}()
	c, err := DialPath(t.Context(), r.path, "tcp", r.l.Addr().String())
	if err != nil {
		t.Fatalf("DialPath: %v", err)
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	c.Close()
	if string(buf[:n]) != "inside\n" {
		t.Fatalf("read %q", buf[:n])
	}
	if _, err := DialPath(t.Context(), "/nonexistent-berth-test", "tcp", "127.0.0.1:1"); err == nil {
		t.Fatal("DialPath into a missing namespace succeeded")
	}
}

// setLoUp brings the loopback interface up (an ioctl, no netlink).
func setLoUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
