package agent

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listeningPorts returns the host's TCP ports in LISTEN state and bound
// UDP ports that fall in [lo, hi]: from the kernel's sock_diag, which
// filters by state, or from /proc/net when that is unavailable. Docker's
// proxies for berth's own containers show up too; the scheduler reserves
// those anyway, so reporting them is harmless.
func listeningPorts(lo, hi int) []int {
	seen := map[int]bool{}
	for _, f := range []struct {
		path          string
		family, proto uint8
		state         uint // TCP_LISTEN is 0A; an unconnected UDP socket is 07
	}{{"/proc/net/tcp", unix.AF_INET, unix.IPPROTO_TCP, tcpListen}, {"/proc/net/tcp6", unix.AF_INET6, unix.IPPROTO_TCP, tcpListen},
		{"/proc/net/udp", unix.AF_INET, unix.IPPROTO_UDP, udpClose}, {"/proc/net/udp6", unix.AF_INET6, unix.IPPROTO_UDP, udpClose}} {
		if diagPorts(f.family, f.proto, f.state, lo, hi, seen) != nil {
			readPorts(f.path, fmt.Sprintf("%02X", f.state), lo, hi, seen)
		}
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

func readPorts(path, state string, lo, hi int, seen map[int]bool) {
	file, err := os.Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != state {
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		if i < 0 {
			continue
		}
		port, err := strconv.ParseInt(fields[1][i+1:], 16, 32)
		if err == nil && int(port) >= lo && int(port) <= hi {
			seen[int(port)] = true
		}
	}
}
