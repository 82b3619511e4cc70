//go:build linux

package oci

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/rootfs"
)

// fakeRoot is a root filesystem with only /etc/passwd and /etc/group.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := tempDir(t)
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001:app:/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n"
	group := "root:x:0:\nstaff:x:50:app,web\napp:x:1001:\nwww:x:33:\nextra:x:70:app\n"
	for name, c := range map[string]string{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestProcessArgs(t *testing.T) {
	img := rootfs.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"serve", "--port=80"}}
	for _, c := range []struct {
		name          string
		command, args []string
		img           rootfs.ImageConfig
		want          []string
		wantErr       string
	}{
		{name: "image defaults", img: img, want: []string{"/entry", "serve", "--port=80"}},
		{name: "args replace cmd", img: img, args: []string{"check"}, want: []string{"/entry", "check"}},
		{name: "command drops image cmd", img: img, command: []string{"sh", "-c", "x"}, want: []string{"sh", "-c", "x"}},
		{name: "command and args", img: img, command: []string{"sh"}, args: []string{"-c", "y"}, want: []string{"sh", "-c", "y"}},
		{name: "cmd only image", img: rootfs.ImageConfig{Cmd: []string{"sh"}}, want: []string{"sh"}},
		{name: "args only image", img: rootfs.ImageConfig{}, args: []string{"run"}, want: []string{"run"}},
		{name: "nothing to run", img: rootfs.ImageConfig{}, wantErr: "has no entrypoint or cmd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := processArgs(driver.Task{Image: "img:1", Command: c.command, Args: c.args}, c.img)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "img:1") {
					t.Fatalf("err = %v, want %q naming the image", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("args = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		img  []string
		task map[string]string
		want []string
	}{
		{name: "defaults", want: []string{"PATH=" + defaultPath, "HOSTNAME=h"}},
		{name: "image path wins over default", img: []string{"PATH=/bin", "A=1"},
			want: []string{"PATH=/bin", "A=1", "HOSTNAME=h"}},
		{name: "task wins over image, sorted", img: []string{"A=1", "B=2"}, task: map[string]string{"Z": "z", "A": "task", "M": "m=n"},
			want: []string{"PATH=" + defaultPath, "A=task", "B=2", "M=m=n", "Z=z", "HOSTNAME=h"}},
		{name: "hostname is the workload's", task: map[string]string{"HOSTNAME": "mine"},
			want: []string{"PATH=" + defaultPath, "HOSTNAME=h"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := processEnv(driver.Task{Env: c.task}, rootfs.ImageConfig{Env: c.img}, "h")
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("env = %q, want %q", got, c.want)
			}
		})
	}
}

func TestResolveUser(t *testing.T) {
	root := fakeRoot(t)
	for _, c := range []struct {
		user    string
		want    specs.User
		wantErr string
	}{
		{user: "", want: specs.User{}},
		{user: "root", want: specs.User{}},
		{user: "0", want: specs.User{}},
		{user: "app", want: specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{50, 70}}},
		{user: "1000", want: specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{50, 70}}},
		{user: "app:staff", want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{70}}},
		{user: "app:7", want: specs.User{UID: 1000, GID: 7, AdditionalGids: []uint32{50, 70}}},
		{user: "web:www", want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{50}}},
		{user: "4242", want: specs.User{UID: 4242}},
		{user: "4242:4343", want: specs.User{UID: 4242, GID: 4343}},
		{user: "4242:staff", want: specs.User{UID: 4242, GID: 50}},
		{user: "nobody", wantErr: `no such user in the image's /etc/passwd`},
		{user: "app:nogroup", wantErr: `no such group "nogroup"`},
	} {
		t.Run(c.user, func(t *testing.T) {
			got, err := resolveUser(root, c.user)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("user = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestResolveUserStaysInRoot: an image's /etc/passwd that links to an
// absolute path is read inside the image, never from the host.
func TestResolveUserStaysInRoot(t *testing.T) {
	root := tempDir(t)
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "elsewhere"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(root, "elsewhere", "passwd"), []byte("inside:x:7:7::/:/bin/sh\n"), 0o644)
	if err := os.Symlink("/elsewhere/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if u, err := resolveUser(root, "inside"); err != nil || u.UID != 7 {
		t.Fatalf("user via in-image symlink = %+v, %v", u, err)
	}
	if err := os.Remove(filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/../../../../etc/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(root, "root"); err == nil {
		t.Fatal("a passwd link escaping the image was followed to the host")
	}
}

func TestSpec(t *testing.T) {
	root := fakeRoot(t)
	task := driver.Task{InstanceID: "web-1a2b", Image: "img:1", Command: []string{"serve"}, Env: map[string]string{"A": "1"},
		CPUMilli: 250, MemoryBytes: 64 << 20, User: "app", WorkingDir: "srv", ReadOnlyRootFS: true, Tmpfs: []string{"/tmp", "cache"}}
	s, err := Spec(SpecInput{Task: task, Image: rootfs.ImageConfig{WorkingDir: "/ignored", User: "root"}, RootFS: root,
		NetNS: "/run/netns/berth-web-1a2b", BundleDir: "/state/web-1a2b/bundle", Annotations: map[string]string{"berth.app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"serve"}) || p.Cwd != "/srv" || p.User.UID != 1000 || !p.NoNewPrivileges || p.Terminal {
		t.Errorf("process = %+v", p)
	}
	if !slices.Contains(p.Env, "A=1") || !slices.Contains(p.Env, "HOSTNAME=web-1a2b") {
		t.Errorf("env = %q", p.Env)
	}
	for name, set := range map[string][]string{"bounding": p.Capabilities.Bounding, "effective": p.Capabilities.Effective,
		"permitted": p.Capabilities.Permitted} {
		if !reflect.DeepEqual(set, DefaultCapabilities) {
			t.Errorf("%s capabilities = %v", name, set)
		}
	}
	if len(p.Capabilities.Inheritable) != 0 || len(p.Capabilities.Ambient) != 0 {
		t.Errorf("inheritable/ambient capabilities = %v %v", p.Capabilities.Inheritable, p.Capabilities.Ambient)
	}
	if s.Root.Path != root || !s.Root.Readonly || s.Hostname != "web-1a2b" || s.Annotations["berth.app"] != "web" {
		t.Errorf("root %+v hostname %q annotations %v", s.Root, s.Hostname, s.Annotations)
	}
	l := s.Linux
	if l.CgroupsPath != "/berth/web-1a2b" {
		t.Errorf("cgroupsPath = %q", l.CgroupsPath)
	}
	ns := map[specs.LinuxNamespaceType]string{}
	for _, n := range l.Namespaces {
		ns[n.Type] = n.Path
	}
	want := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "", specs.IPCNamespace: "", specs.UTSNamespace: "",
		specs.MountNamespace: "", specs.NetworkNamespace: "/run/netns/berth-web-1a2b"}
	if !reflect.DeepEqual(ns, want) {
		t.Errorf("namespaces = %v", ns)
	}
	r := l.Resources
	if *r.CPU.Quota != 25_000 || *r.CPU.Period != 100_000 || *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || *r.Pids.Limit != 4096 {
		t.Errorf("resources cpu %d/%d memory %d swap %d pids %d", *r.CPU.Quota, *r.CPU.Period, *r.Memory.Limit, *r.Memory.Swap, *r.Pids.Limit)
	}
	if !slices.Contains(l.MaskedPaths, "/proc/kcore") || !slices.Contains(l.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v readonly %v", l.MaskedPaths, l.ReadonlyPaths)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		mounts[m.Destination] = m
	}
	for _, dst := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/tmp", "/cache"} {
		if _, ok := mounts[dst]; !ok {
			t.Errorf("no mount at %s", dst)
		}
	}
	if !slices.Contains(mounts["/sys"].Options, "ro") || mounts["/tmp"].Type != "tmpfs" {
		t.Errorf("/sys %+v /tmp %+v", mounts["/sys"], mounts["/tmp"])
	}
	for _, f := range []string{"resolv.conf", "hosts", "hostname"} {
		m := mounts["/etc/"+f]
		if m.Type != "bind" || m.Source != "/state/web-1a2b/bundle/"+f {
			t.Errorf("/etc/%s mount = %+v", f, m)
		}
	}
}

func TestSpecNoNetworkAndLimits(t *testing.T) {
	s, err := Spec(SpecInput{Task: driver.Task{InstanceID: "a", Command: []string{"true"}, CPUMilli: 1}, RootFS: fakeRoot(t), PidsLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace && n.Path != "" {
			t.Errorf("network namespace path %q, want a new one", n.Path)
		}
	}
	r := s.Linux.Resources
	if *r.CPU.Quota != 1000 || r.Memory != nil || r.Pids != nil {
		t.Errorf("cpu quota %d (want the 1ms minimum), memory %+v, pids %+v", *r.CPU.Quota, r.Memory, r.Pids)
	}
	if s.Process.Cwd != "/" {
		t.Errorf("cwd = %q", s.Process.Cwd)
	}
	s, err = Spec(SpecInput{Task: driver.Task{InstanceID: "a", Command: []string{"true"}, MemoryBytes: 1 << 20}, RootFS: fakeRoot(t),
		NoSwapLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Linux.Resources.Memory; *m.Limit != 1<<20 || m.Swap != nil {
		t.Errorf("memory without swap accounting: %+v", m)
	}
}

func TestDefaultSeccomp(t *testing.T) {
	s := DefaultSeccomp()
	if s.DefaultAction != specs.ActAllow {
		t.Fatalf("default action %s", s.DefaultAction)
	}
	denied := map[string]bool{}
	for _, sc := range s.Syscalls {
		if sc.Action != specs.ActErrno || sc.ErrnoRet == nil {
			t.Errorf("rule %+v does not return an errno", sc)
		}
		for _, n := range sc.Names {
			if len(sc.Args) == 0 {
				denied[n] = true
			}
		}
	}
	for _, n := range []string{"kexec_load", "init_module", "finit_module", "delete_module", "mount", "umount2", "pivot_root",
		"swapon", "swapoff", "reboot", "setns", "unshare", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
		"ptrace", "open_by_handle_at", "iopl", "ioperm", "acct", "quotactl", "kcmp", "lookup_dcookie", "name_to_handle_at",
		"userfaultfd", "process_vm_readv", "process_vm_writev", "clone3"} {
		if !denied[n] {
			t.Errorf("%s is not denied", n)
		}
	}
	if denied["clone"] {
		t.Error("clone is denied outright; only namespace flags should be")
	}
}

func TestResolvConf(t *testing.T) {
	dir := tempDir(t)
	p := filepath.Join(dir, "resolv.conf")
	for _, c := range []struct{ host, want string }{
		{"nameserver 127.0.0.53\noptions edns0\n", "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"search example.org\nnameserver 10.0.0.2\nnameserver ::1\n", "search example.org\nnameserver 10.0.0.2\n"},
	} {
		if err := os.WriteFile(p, []byte(c.host), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := resolvConf(p); err != nil || got != c.want {
			t.Errorf("resolvConf(%q) = %q, %v; want %q", c.host, got, err, c.want)
		}
	}
}
