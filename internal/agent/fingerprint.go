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
	// Capacity includes GPUs, the number of devices in GPUs.
	Capacity model.Resources
	// Arch and OS are Go's names (amd64, arm64; linux); Kernel is the
	// kernel release (uname -r).
	Arch, OS, Kernel string
	// GPUs are the GPU devices found (see detectGPUs).
	GPUs []model.GPU
}

// Detect reads the host's hostname, CPU count, memory, architecture,
// kernel and GPUs.
func Detect() Fingerprint {
	host, _ := os.Hostname()
	gpus := detectGPUs(gpuSource{fake: os.Getenv(FakeGPUsEnv), run: runNvidiaSMI})
	return Fingerprint{Hostname: host, Capacity: model.Resources{
		CPU:    model.MilliCPU(runtime.NumCPU() * 1000),
		Memory: model.ByteSize(memTotal()),
		GPUs:   len(gpus),
	}, Arch: runtime.GOARCH, OS: runtime.GOOS, Kernel: kernelRelease(), GPUs: gpus}
}

// Apply writes the fingerprint's attributes onto the node the agent
// registers: arch, os, kernel and GPU devices, and region and zone from
// the labels berth.region and berth.zone. Capacity is left to the caller
// (it may be overridden by options).
func (f Fingerprint) Apply(n *model.Node) {
	n.Arch, n.OS, n.Kernel = f.Arch, f.OS, f.Kernel
	n.GPUs = f.GPUs
	if n.Capacity.GPUs == 0 {
		n.Capacity.GPUs = len(f.GPUs)
	}
	if v := n.Labels["berth.region"]; v != "" {
		n.Region = v
	}
	if v := n.Labels["berth.zone"]; v != "" {
		n.Zone = v
	}
}

// kernelRelease returns the running kernel's release, or "".
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
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
