package cgroups

import "strconv"

// cpuPeriod is the CFS period (µs) quotas are expressed in.
const cpuPeriod = 100_000

// minQuota is the smallest CFS quota the kernel accepts (µs).
const minQuota = 1_000

// DefaultPids is the pids limit used when Limits.Pids is zero.
const DefaultPids = 4096

// Limits are what a workload's cgroup allows. Zero CPUMilli or MemoryBytes
// mean unlimited; zero Pids means DefaultPids and a negative one unlimited.
type Limits struct {
	// CPUMilli is CPU time in thousandths of a core (CFS quota over a
	// 100ms period).
	CPUMilli int64
	// MemoryBytes caps memory; swap is capped too, so the workload cannot
	// use swap beyond it.
	MemoryBytes int64
	// Pids caps the number of processes and threads.
	Pids int64
}

// setting is one control file to write: Controller is the v1 hierarchy
// ("" on v2, where all files are in the one directory).
type setting struct {
	Controller string
	File       string
	Value      string
	// Optional settings are skipped when the kernel lacks the file (swap
	// accounting off, for instance).
	Optional bool
}

// cpuQuota is the CFS quota in µs for millicores, or -1 for unlimited.
func cpuQuota(milli int64) int64 {
	if milli <= 0 {
		return -1
	}
	q := milli * cpuPeriod / 1000
	if q < minQuota {
		q = minQuota
	}
	return q
}

func pidsMax(n int64) string {
	switch {
	case n == 0:
		return strconv.Itoa(DefaultPids)
	case n < 0:
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// v1Settings are the files written for l on cgroup v1, in order (memory
// before memsw: memsw must never be below the memory limit).
func v1Settings(l Limits) []setting {
	s := []setting{
		{Controller: "cpu", File: "cpu.cfs_period_us", Value: strconv.Itoa(cpuPeriod)},
		{Controller: "cpu", File: "cpu.cfs_quota_us", Value: strconv.FormatInt(cpuQuota(l.CPUMilli), 10)},
	}
	if l.MemoryBytes > 0 {
		v := strconv.FormatInt(l.MemoryBytes, 10)
		s = append(s,
			setting{Controller: "memory", File: "memory.limit_in_bytes", Value: v},
			setting{Controller: "memory", File: "memory.memsw.limit_in_bytes", Value: v, Optional: true})
	}
	return append(s, setting{Controller: "pids", File: "pids.max", Value: pidsMax(l.Pids)})
}

// v2Settings are the files written for l on cgroup v2.
func v2Settings(l Limits) []setting {
	cpu := "max " + strconv.Itoa(cpuPeriod)
	if q := cpuQuota(l.CPUMilli); q > 0 {
		cpu = strconv.FormatInt(q, 10) + " " + strconv.Itoa(cpuPeriod)
	}
	s := []setting{{File: "cpu.max", Value: cpu}}
	if l.MemoryBytes > 0 {
		s = append(s,
			setting{File: "memory.max", Value: strconv.FormatInt(l.MemoryBytes, 10)},
			// v2 counts swap separately: none at all means no swap beyond
			// the memory limit.
			setting{File: "memory.swap.max", Value: "0", Optional: true})
	} else {
		s = append(s, setting{File: "memory.max", Value: "max"})
	}
	return append(s, setting{File: "pids.max", Value: pidsMax(l.Pids)})
}

// v1Controllers are the v1 hierarchies a workload joins.
var v1Controllers = []string{"cpu", "memory", "pids"}

// v2Controllers are enabled in the parents' cgroup.subtree_control.
var v2Controllers = []string{"cpu", "memory", "pids"}
