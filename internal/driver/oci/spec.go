//go:build linux

package oci

import (
	"fmt"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/rootfs"
)

// defaultPath is PATH for images that set none (Docker's default).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultPidsLimit bounds the processes of a workload unless Options say
// otherwise.
const defaultPidsLimit = 4096

// specVersion is the runtime-spec version bundles declare: the oldest
// that has every field berth uses (seccomp errnoRet), because older
// runtimes refuse newer versions (crun 1.8: "unknown version specified").
const specVersion = "1.0.2"

// cpuPeriod is the CFS period CPU limits are expressed in (100ms).
const cpuPeriod = 100_000

// SpecInput is what Spec builds a runtime configuration from.
type SpecInput struct {
	// Task is the workload.
	Task driver.Task
	// Image is the image's configuration; the task's fields win.
	Image rootfs.ImageConfig
	// RootFS is the prepared root filesystem directory. User names are
	// looked up in its /etc/passwd and /etc/group.
	RootFS string
	// NetNS is the network namespace to join; empty makes a new one that
	// has only a loopback interface.
	NetNS string
	// BundleDir holds the resolv.conf, hosts and hostname files that are
	// bind-mounted into the container (see writeEtcFiles).
	BundleDir string
	// Annotations are set on the bundle (the workload's labels).
	Annotations map[string]string
	// PidsLimit bounds the number of processes; zero means 4096, negative
	// means no limit.
	PidsLimit int64
	// NoSwapLimit leaves swap unset, for hosts without swap accounting
	// (where runtimes refuse a swap limit); otherwise swap = memory.
	NoSwapLimit bool
}

// Hostname is the hostname a workload of instance id gets: the ID cut to
// the 63 characters a hostname allows.
func Hostname(id string) string {
	if len(id) > 63 {
		return id[:63]
	}
	return id
}

// Spec builds the OCI runtime configuration for a task: Docker's process
// semantics and security defaults (capabilities, no-new-privileges,
// seccomp, masked paths), berth's resource limits and the cgroup
// /berth/<InstanceID>.
func Spec(in SpecInput) (*specs.Spec, error) {
	t := in.Task
	args, err := processArgs(t, in.Image)
	if err != nil {
		return nil, err
	}
	userSpec := t.User
	if userSpec == "" {
		userSpec = in.Image.User
	}
	user, err := resolveUser(in.RootFS, userSpec)
	if err != nil {
		return nil, err
	}
	cwd := t.WorkingDir
	if cwd == "" {
		cwd = in.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	cwd = path.Join("/", cwd)
	host := Hostname(t.InstanceID)
	caps := append([]string(nil), DefaultCapabilities...)
	devices, deviceRules := defaultDevices()
	s := &specs.Spec{
		Version: specVersion,
		Process: &specs.Process{
			User: user,
			Args: args,
			Env:  processEnv(t, in.Image, host),
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Root:        &specs.Root{Path: in.RootFS, Readonly: t.ReadOnlyRootFS},
		Hostname:    host,
		Mounts:      mounts(t, in.BundleDir),
		Annotations: in.Annotations,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: in.NetNS},
			},
			Devices:       devices,
			CgroupsPath:   CgroupsPath(t.InstanceID),
			Resources:     resources(t, in.PidsLimit, !in.NoSwapLimit, deviceRules),
			Seccomp:       DefaultSeccomp(),
			MaskedPaths:   append([]string(nil), maskedPaths...),
			ReadonlyPaths: append([]string(nil), readonlyPaths...),
		},
	}
	return s, nil
}

// CgroupsPath is the cgroup of workload id, relative to each hierarchy's
// root (cgroupfs style, the same on cgroup v1 and v2).
func CgroupsPath(id string) string { return "/berth/" + id }

// processArgs applies Docker's rules: Command replaces the entrypoint and
// drops the image's cmd; Args replaces the cmd.
func processArgs(t driver.Task, img rootfs.ImageConfig) ([]string, error) {
	entry, cmd := img.Entrypoint, img.Cmd
	if len(t.Command) > 0 {
		entry, cmd = t.Command, nil
	}
	if len(t.Args) > 0 {
		cmd = t.Args
	}
	args := append(append([]string(nil), entry...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("image %s has no entrypoint or cmd and the task gives no command", t.Image)
	}
	return args, nil
}

// processEnv is the image's environment, then the task's (winning, in key
// order), then HOSTNAME; PATH defaults to Docker's.
func processEnv(t driver.Task, img rootfs.ImageConfig, host string) []string {
	var env []string
	index := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			return
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	set("PATH=" + defaultPath)
	for _, kv := range img.Env {
		set(kv)
	}
	keys := make([]string, 0, len(t.Env))
	for k := range t.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k + "=" + t.Env[k])
	}
	set("HOSTNAME=" + host)
	return env
}

// mounts are Docker's default mounts, the bundle's /etc files and the
// task's tmpfs paths.
func mounts(t driver.Task, bundleDir string) []specs.Mount {
	m := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	for _, f := range etcFiles {
		m = append(m, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: path.Join(bundleDir, f),
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}})
	}
	for _, p := range t.Tmpfs {
		m = append(m, specs.Mount{Destination: path.Join("/", p), Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=1777"}})
	}
	return m
}

// resources turns the task's limits into cgroup settings: CPUMilli as a
// CFS quota, MemoryBytes as the memory limit with no swap beyond it (when
// swapLimit).
func resources(t driver.Task, pidsLimit int64, swapLimit bool, devices []specs.LinuxDeviceCgroup) *specs.LinuxResources {
	r := &specs.LinuxResources{Devices: devices}
	if t.CPUMilli > 0 {
		quota, period := t.CPUMilli*cpuPeriod/1000, uint64(cpuPeriod)
		if quota < 1000 {
			quota = 1000 // the kernel's minimum quota is 1ms
		}
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if t.MemoryBytes > 0 {
		limit, swap := t.MemoryBytes, t.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &limit}
		if swapLimit {
			r.Memory.Swap = &swap
		}
	}
	if pidsLimit == 0 {
		pidsLimit = defaultPidsLimit
	}
	if pidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: &pidsLimit}
	}
	return r
}
