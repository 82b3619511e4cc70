package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// Fingerprint describes the host the agent runs on.
type Fingerprint struct {
	Hostname string
	Capacity model.Resources
}

// Detect reads the host's hostname, CPU count and memory.
func Detect() Fingerprint {
	host, _ := os.Hostname()
	return Fingerprint{Hostname: host, Capacity: model.Resources{
		CPU:    model.MilliCPU(runtime.NumCPU() * 1000),
		Memory: model.ByteSize(memTotal()),
	}}
}

// memTotal returns MemTotal from /proc/meminfo in bytes, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
