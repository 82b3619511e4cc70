package agent

import (
	"net"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListeningPortsSeesAListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if got := listeningPorts(port, port); !slices.Equal(got, []int{port}) {
		t.Fatalf("listeningPorts(%d) = %v", port, got)
	}
	if got := listeningPorts(port+1, port); len(got) != 0 {
		t.Fatalf("empty range gave %v", got)
	}
}

// sock_diag itself (not the /proc fallback) reports listeners and bound
// UDP sockets of both families, and not the ports of connections.
func TestSockDiagReportsListenersOnly(t *testing.T) {
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	defer l6.Close()
	u4, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u4.Close()
	conn, err := net.Dial("tcp4", l4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := conn.LocalAddr().(*net.TCPAddr).Port

	check := func(family, proto uint8, state uint, port int, want bool) {
		t.Helper()
		seen := map[int]bool{}
		if err := diagPorts(family, proto, state, 1, 65535, seen); err != nil {
			t.Fatal(err)
		}
		if seen[port] != want {
			t.Errorf("family %d proto %d port %d: reported %v, want %v", family, proto, port, seen[port], want)
		}
	}
	check(unix.AF_INET, unix.IPPROTO_TCP, tcpListen, l4.Addr().(*net.TCPAddr).Port, true)
	check(unix.AF_INET6, unix.IPPROTO_TCP, tcpListen, l6.Addr().(*net.TCPAddr).Port, true)
	check(unix.AF_INET, unix.IPPROTO_UDP, udpClose, u4.LocalAddr().(*net.UDPAddr).Port, true)
	check(unix.AF_INET, unix.IPPROTO_TCP, tcpListen, client, false)
}
