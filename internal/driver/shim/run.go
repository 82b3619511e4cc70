//go:build linux

package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainGrace is how long the shim keeps reading output after the workload
// exited, for lines still in the pipe; a background process that inherited
// the pipe cannot hold the shim longer.
const drainGrace = 2 * time.Second

// MaybeRun must be called first thing in main() and in TestMain(): if this
// process was started as a shim or as a shim's exec stage, it does that
// job and exits; otherwise it returns at once.
func MaybeRun() {
	if dir := os.Getenv(envExecDir); dir != "" {
		spec, err := readSpec(dir)
		execStage(spec, err) // does not return
	}
	if js := os.Getenv(envExecSpec); js != "" {
		var spec Spec
		err := json.Unmarshal([]byte(js), &spec)
		execStage(spec, err) // does not return
	}
	if os.Getenv(envShimWarm) != "" {
		dir, ok := warmDir()
		if !ok {
			os.Exit(0) // a spare nobody needed
		}
		os.Exit(runShim(dir))
	}
}

// readSpec loads <dir>/shim.json.
func readSpec(dir string) (Spec, error) {
	var spec Spec
	b, err := os.ReadFile(filepath.Join(dir, specFile))
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		return spec, fmt.Errorf("shim: read spec: %w", err)
	}
	if spec.LogMaxBytes <= 0 {
		spec.LogMaxBytes = DefaultLogMaxBytes
	}
	if spec.LogMaxFiles <= 0 {
		spec.LogMaxFiles = DefaultLogMaxFiles
	}
	return spec, nil
}

// runShim is the shim process: start the workload, report to Launch on
// fd 3, log its output, record its exit.
func runShim(dir string) int {
	// Handle (rather than ignore) these so the workload does not inherit
	// an ignored disposition through exec.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	go func() {
		for range sigs {
		}
	}()
	syscall.CloseOnExec(3)
	report := os.NewFile(3, "launch-report")
	reply := func(msg string) {
		if report != nil {
			fmt.Fprintln(report, msg)
			report.Close()
			report = nil
		}
	}
	_, shimStart, _ := procStat(os.Getpid())
	rec := record{State: State{ShimPID: os.Getpid()}, ShimStart: shimStart}
	fail := func(err error) int {
		rec.Running = false
		rec.Error = err.Error()
		rec.FinishedAt = time.Now().UTC()
		if rec.ExitCode == 0 {
			rec.ExitCode = 127
		}
		_ = writeState(dir, rec)
		reply("error: " + oneLine(err.Error()))
		return 1
	}

	spec, err := readSpec(dir)
	if err != nil {
		return fail(err)
	}
	logw, err := openLogWriter(dir, spec.LogMaxBytes, spec.LogMaxFiles)
	if err != nil {
		return fail(err)
	}
	defer logw.Close()

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(err)
	}
	cmd, err := workloadCommand(dir, spec, devnull, outW, errW)
	if err == nil {
		err = cmd.Start()
	}
	outW.Close()
	errW.Close()
	devnull.Close()
	if err != nil {
		return fail(err)
	}
	// The exec stage writes why it failed, or nothing: exec closes the
	// close-on-exec pipe. (A direct start never writes to it.)
	msg, _ := io.ReadAll(errR)
	errR.Close()
	if len(msg) > 0 {
		_ = cmd.Wait()
		outR.Close()
		return fail(errors.New(strings.TrimSpace(string(msg))))
	}
	rec.PID = cmd.Process.Pid
	rec.Running = true
	rec.StartedAt = time.Now().UTC()
	if err := writeState(dir, rec); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fail(err)
	}
	reply("ok")

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		logw.copyLines(outR)
	}()
	waitErr := cmd.Wait()
	select {
	case <-copied:
	case <-time.After(drainGrace):
		// Something the workload left behind holds the pipe open: stop
		// reading (the copier returns once the read end is closed).
		outR.Close()
		<-copied
	}
	outR.Close()
	rec.Running = false
	rec.FinishedAt = time.Now().UTC()
	rec.ExitCode = exitCode(cmd.ProcessState, waitErr)
	logw.Close()
	if err := writeState(dir, rec); err != nil {
		return 1
	}
	return 0
}

// workloadCommand is how the shim starts the workload. With a network
// namespace, cgroups or credentials to apply before exec it goes through
// the exec stage (this binary again, which joins them and execs the
// command, reporting failures on report); without, the command is
// started directly, one process start fewer (an OCI runtime sets up its
// container itself).
func workloadCommand(dir string, spec Spec, stdin, out, report *os.File) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if spec.NetNS == "" && len(spec.Cgroups) == 0 && spec.Credential == nil {
		path, err := lookPath(spec.Args[0], spec.Env)
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(path)
		cmd.Args, cmd.Env, cmd.Dir = spec.Args, spec.Env, spec.Dir
		if cmd.Dir == "" {
			cmd.Dir = "/"
		}
		if fi, err := os.Stat(cmd.Dir); err != nil || !fi.IsDir() {
			if err == nil {
				err = fmt.Errorf("%s is not a directory", cmd.Dir)
			}
			return nil, fmt.Errorf("working directory: %w", err) // as the exec stage says it
		}
	} else {
		cmd = selfCommand("berth-exec")
		cmd.Env = []string{envExecDir + "=" + dir}
		cmd.Dir = "/"
		cmd.ExtraFiles = []*os.File{report}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// exitCode is the workload's exit status, 128+signal when killed.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 127
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// selfExe re-executes exactly this binary, even if the file was replaced
// on disk since (an upgrade while workloads run).
const selfExe = "/proc/self/exe"

// selfCommand runs this binary again; name is its argv[0], so shims and
// exec stages are recognisable in ps.
func selfCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(selfExe, args...)
	cmd.Args[0] = name
	return cmd
}

// oneLine keeps a message on one line for the report pipe.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// execStage runs in the workload's process: join the network namespace
// and cgroups, drop credentials, exec. Failures (including specErr) go to
// fd 3 and exit 127.
func execStage(spec Spec, specErr error) {
	runtime.LockOSThread() // setns applies to this thread; exec from it
	syscall.CloseOnExec(3) // so a successful exec closes the report pipe
	report := os.NewFile(3, "exec-report")
	die := func(err error) {
		fmt.Fprint(report, err.Error())
		os.Exit(127)
	}
	if specErr != nil {
		die(specErr)
	}
	if len(spec.Args) == 0 {
		die(errors.New("shim: no command to run"))
	}
	if spec.NetNS != "" {
		f, err := os.Open(spec.NetNS)
		if err != nil {
			die(fmt.Errorf("join network namespace: %w", err))
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			die(fmt.Errorf("join network namespace %s: %w", spec.NetNS, err))
		}
		f.Close()
	}
	pid := []byte(fmt.Sprint(os.Getpid()))
	for _, p := range spec.Cgroups {
		if err := os.WriteFile(p, pid, 0); err != nil {
			die(fmt.Errorf("join cgroup: %w", err))
		}
	}
	wd := spec.Dir
	if wd == "" {
		wd = "/"
	}
	if err := os.Chdir(wd); err != nil {
		die(fmt.Errorf("working directory: %w", err))
	}
	if c := spec.Credential; c != nil {
		groups := make([]int, len(c.Groups))
		for i, g := range c.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			die(fmt.Errorf("set groups: %w", err))
		}
		if err := syscall.Setgid(int(c.GID)); err != nil {
			die(fmt.Errorf("set gid %d: %w", c.GID, err))
		}
		if err := syscall.Setuid(int(c.UID)); err != nil {
			die(fmt.Errorf("set uid %d: %w", c.UID, err))
		}
	}
	path, err := lookPath(spec.Args[0], spec.Env)
	if err != nil {
		die(err)
	}
	err = syscall.Exec(path, spec.Args, spec.Env)
	die(&exec.Error{Name: spec.Args[0], Err: err})
}

// lookPath finds file in the PATH of env (or a default PATH), like
// exec.LookPath does with the process's own.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", &exec.Error{Name: file, Err: err}
		}
		return file, nil
	}
	path := strings.TrimPrefix(defaultPath, "PATH=")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

// executable checks that path is a regular file with an execute bit.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}
