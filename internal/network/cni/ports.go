//go:build linux

package cni

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/driver"
)

// hostPort is one host port and protocol, the unit of a port claim.
type hostPort struct {
	Port  int
	Proto string
}

// String formats the port as "8080/tcp", the form used in errors and in
// claim file names.
func (h hostPort) String() string { return fmt.Sprintf("%d/%s", h.Port, h.Proto) }

// claimName is the file name of the claim for h under the ports directory.
func (h hostPort) claimName() string { return h.Proto + "-" + strconv.Itoa(h.Port) }

// parseClaimName is the inverse of claimName.
func parseClaimName(name string) (hostPort, bool) {
	proto, num, ok := strings.Cut(name, "-")
	if !ok || (proto != "tcp" && proto != "udp") {
		return hostPort{}, false
	}
	p, err := strconv.Atoi(num)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != num {
		return hostPort{}, false
	}
	return hostPort{Port: p, Proto: proto}, true
}

// normalizePorts validates ports and fills defaults: an empty protocol is
// tcp. A zero HostPort is kept (it is assigned later). Two bindings of the
// same host port and protocol are refused.
func normalizePorts(ports []driver.PortBinding) ([]driver.PortBinding, error) {
	out := make([]driver.PortBinding, 0, len(ports))
	seen := map[hostPort]bool{}
	for _, p := range ports {
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return nil, fmt.Errorf("port %q: protocol %q is not supported (use tcp or udp)", p.Name, p.Protocol)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("port %q: container port must be between 1 and 65535, got %d", p.Name, p.ContainerPort)
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			return nil, fmt.Errorf("port %q: host port must be between 0 (assign one) and 65535, got %d", p.Name, p.HostPort)
		}
		if p.HostPort > 0 {
			hp := hostPort{p.HostPort, p.Protocol}
			if seen[hp] {
				return nil, fmt.Errorf("host port %s is published twice in the same request", hp)
			}
			seen[hp] = true
		}
		out = append(out, p)
	}
	return out, nil
}

// allocatedError is the error for a host port that cannot be published.
func allocatedError(hp hostPort, owner string) error {
	if owner != "" {
		return fmt.Errorf("host port %s is already allocated (published for workload %s)", hp, owner)
	}
	return fmt.Errorf("host port %s is already allocated (another process on the host is bound to it)", hp)
}

// probePort reports whether hp can be bound on the host right now: a
// process already listening on it makes the bind fail. portmap only
// installs DNAT rules, so without this check a published port would
// silently shadow (or be shadowed by) a host process.
func probePort(hp hostPort) (free bool, err error) {
	addr := ":" + strconv.Itoa(hp.Port)
	var c interface{ Close() error }
	switch hp.Proto {
	case "udp":
		c, err = net.ListenPacket("udp", addr)
	default:
		c, err = net.Listen("tcp", addr)
	}
	if err == nil {
		c.Close()
		return true, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return false, nil
	}
	return false, fmt.Errorf("check host port %s: %w", hp, err)
}

// pickPort asks the kernel for a currently free port for proto.
func pickPort(proto string) (int, error) {
	var addr net.Addr
	switch proto {
	case "udp":
		c, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return 0, fmt.Errorf("pick a free udp port: %w", err)
		}
		addr = c.LocalAddr()
		c.Close()
		return addr.(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return 0, fmt.Errorf("pick a free tcp port: %w", err)
		}
		addr = l.Addr()
		l.Close()
		return addr.(*net.TCPAddr).Port, nil
	}
}
