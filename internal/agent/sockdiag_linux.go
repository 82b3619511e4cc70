package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket states of the kernel's TCP state machine used as sock_diag
// filters: listening TCP sockets, and unconnected (bound) UDP sockets.
const (
	tcpListen = 10
	udpClose  = 7
)

// diagPorts asks the kernel (NETLINK_SOCK_DIAG, inet_diag) for the local
// ports of proto sockets of family in state. Unlike /proc/net/tcp it
// filters in the kernel, so connections (TIME_WAIT by the thousand under
// load) cost nothing.
func diagPorts(family, proto uint8, state uint, lo, hi int, seen map[int]bool) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	// nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes).
	req := make([]byte, 16+56)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], 20) // SOCK_DIAG_BY_FAMILY
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	req[16], req[17] = family, proto
	binary.NativeEndian.PutUint32(req[20:], 1<<state)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return fmt.Errorf("sock_diag: %w", syscall.Errno(-errno))
					}
				}
				return errors.New("sock_diag: error answer")
			}
			// inet_diag_msg: family, state, timer, retrans, then the
			// socket id, whose first field is the source port (big endian).
			if len(m.Data) < 6 {
				continue
			}
			if port := int(binary.BigEndian.Uint16(m.Data[4:])); port >= lo && port <= hi {
				seen[port] = true
			}
		}
	}
}
