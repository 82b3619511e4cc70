package agent

import (
	"bufio"
	"os"
	"sort"
	"strconv"
	"strings"
)

// listeningPorts returns the host's TCP ports in LISTEN state and bound
// UDP ports that fall in [lo, hi], read from /proc/net. Docker's proxies
// for berth's own containers show up too; the scheduler reserves those
// anyway, so reporting them is harmless.
func listeningPorts(lo, hi int) []int {
	seen := map[int]bool{}
	for _, f := range []struct {
		path  string
		state string // TCP_LISTEN is 0A; an unconnected UDP socket is 07
	}{{"/proc/net/tcp", "0A"}, {"/proc/net/tcp6", "0A"}, {"/proc/net/udp", "07"}, {"/proc/net/udp6", "07"}} {
		readPorts(f.path, f.state, lo, hi, seen)
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
