package agent

import (
	"net"
	"slices"
	"testing"
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
