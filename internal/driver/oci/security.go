//go:build linux

package oci

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities is Docker's default capability set. Workloads get
// exactly these in their bounding, effective and permitted sets.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedPaths and readonlyPaths are Docker's defaults: kernel interfaces a
// container must not read (masked) or write (read-only).
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// deniedSyscalls fail with EPERM under the default seccomp profile: they
// load or change the kernel, reach into other processes, change the
// system's clock, swap or mounts, or open kernel-wide facilities (keyrings,
// BPF, perf). None is needed by ordinary services and all of them either
// need a capability the workload lacks or widen the kernel's attack
// surface without one.
var deniedSyscalls = []string{
	// kernel modules and kexec
	"create_module", "init_module", "finit_module", "delete_module", "query_module",
	"get_kernel_syms", "kexec_load", "kexec_file_load",
	// mounts and namespaces (CAP_SYS_ADMIN is never granted)
	"mount", "umount", "umount2", "pivot_root", "setns", "unshare",
	"fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
	// whole-system state
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday", "stime",
	"clock_settime", "clock_adjtime", "syslog", "sysfs", "_sysctl", "ustat", "uselib", "nfsservctl",
	"vhangup", "lookup_dcookie",
	// keyrings, BPF, perf, userfaultfd
	"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
	// other processes and raw hardware
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "iopl", "ioperm", "vm86", "vm86old",
	"open_by_handle_at", "name_to_handle_at",
}

// namespaceCloneFlags are the clone(2) flags that create namespaces:
// CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
var namespaceCloneFlags = []uint64{0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000}

// DefaultSeccomp returns berth's default seccomp profile: everything is
// allowed except deniedSyscalls (EPERM), clone(2) creating namespaces
// (EPERM) and clone3(2) (ENOSYS, whose flags seccomp cannot inspect, so
// libc falls back to clone), like Docker's default without CAP_SYS_ADMIN.
func DefaultSeccomp() *specs.LinuxSeccomp {
	eperm, enosys := uint(1), uint(38)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32,
			specs.ArchAARCH64, specs.ArchARM},
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	for _, f := range namespaceCloneFlags {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActErrno,
			ErrnoRet: &eperm, Args: []specs.LinuxSeccompArg{{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual}}})
	}
	return s
}

// defaultDevices are the device nodes every container gets, with the
// device-cgroup rules that allow them (everything else is denied).
func defaultDevices() ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup) {
	mode := func(m os.FileMode) *os.FileMode { return &m }
	zero := uint32(0)
	devs := []specs.LinuxDevice{
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666), UID: &zero, GID: &zero},
		{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o666), UID: &zero, GID: &zero},
		{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: mode(0o666), UID: &zero, GID: &zero},
		{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: mode(0o666), UID: &zero, GID: &zero},
		{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: mode(0o666), UID: &zero, GID: &zero},
		{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: mode(0o666), UID: &zero, GID: &zero},
	}
	i64 := func(v int64) *int64 { return &v }
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range devs {
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(d.Major), Minor: i64(d.Minor), Access: "rwm"})
	}
	// /dev/pts/* and /dev/pts/ptmx
	rules = append(rules,
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(136), Access: "rwm"},
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"})
	return devs, rules
}
