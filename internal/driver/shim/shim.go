//go:build linux

// Package shim supervises one workload process from outside the agent, so
// workloads survive an agent restart and the agent can reattach to them.
//
// A shim is berth's own binary started again in a new session with stdio on
// /dev/null (see MaybeRun). It starts the workload through a tiny "exec
// stage" — the binary once more — that joins the requested network
// namespace and cgroups and drops credentials on its own thread before it
// execs the real command, so nothing of the shim is charged to the
// workload. The shim writes the workload's stdout and stderr, line by line
// with a timestamp, to <dir>/log (rotated by size) and its pid, start, exit
// code and finish to <dir>/state.json. Anyone can read that directory
// later: Read, Wait and Logs work for shims the caller did not start.
//
// The shim does not forward signals: callers signal the workload's process
// group (State.PID is its leader) directly.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Files inside a shim directory.
const (
	specFile  = "shim.json"
	stateFile = "state.json"
	logFile   = "log"
)

// Environment markers that make MaybeRun act as the shim or the exec stage.
const (
	envExecDir  = "BERTH_SHIM_EXEC"
	envExecSpec = "BERTH_SHIM_EXEC_SPEC"
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Log rotation defaults.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogMaxFiles = 3
)

// ExitShimDied is the exit code reported for a workload whose shim died
// without recording how the workload ended.
const ExitShimDied = 255

// ErrShimDied is the State.Error of a workload whose shim died.
const ErrShimDied = "shim died"

// Spec is what a shim runs; Launch writes it to <dir>/shim.json.
type Spec struct {
	// Args is the argv; Args[0] is looked up in the PATH of Env unless it
	// contains a slash.
	Args []string `json:"args"`
	// Env is the whole environment of the workload (KEY=VALUE).
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; empty means /.
	Dir string `json:"dir,omitempty"`
	// NetNS is the path of a network namespace the workload joins before
	// exec; empty means the shim's (the host's) namespace.
	NetNS string `json:"netns,omitempty"`
	// Cgroups are cgroup.procs (or v1 tasks) files the workload writes its
	// pid into before exec.
	Cgroups []string `json:"cgroups,omitempty"`
	// Credential, when set, is who the workload runs as.
	Credential *Credential `json:"credential,omitempty"`
	// LogMaxBytes rotates <dir>/log at this size (default 10 MiB).
	LogMaxBytes int64 `json:"log_max_bytes,omitempty"`
	// LogMaxFiles is how many rotated files are kept (default 3).
	LogMaxFiles int `json:"log_max_files,omitempty"`
}

// Credential is the identity a workload runs as. Groups replaces the
// supplementary groups (none when empty).
type Credential struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// State is a workload's lifecycle as the shim recorded it.
type State struct {
	// ShimPID is the supervising shim process.
	ShimPID int `json:"shim_pid"`
	// PID is the workload process, also its process group ID.
	PID int `json:"pid"`
	// Running is true while the workload runs and its shim is alive.
	Running    bool      `json:"running"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// ExitCode is the exit status, 128+N when killed by signal N (SIGKILL
	// gives 137), 255 when the shim died without recording one.
	ExitCode int `json:"exit_code"`
	// Error says why the workload failed to start or why its end is unknown.
	Error string `json:"error,omitempty"`
}

// record is state.json: State plus what Read needs to tell a live shim from
// a recycled pid.
type record struct {
	State
	// ShimStart is the shim's start time in clock ticks since boot
	// (/proc/<pid>/stat field 22).
	ShimStart uint64 `json:"shim_start,omitempty"`
}

// Launch starts a detached shim for spec in dir (created if missing) and
// returns once the workload has started, or with the reason it could not
// (then nothing is left running). Launching in a dir whose workload has
// exited restarts it: the log is appended to and the state replaced.
// After a shim died its workload may still run, orphaned; Launch does not
// know about it, so callers kill what is left (e.g. in the workload's
// cgroup) before launching again.
func Launch(dir string, spec Spec) (State, error) {
	if len(spec.Args) == 0 || spec.Args[0] == "" {
		return State{}, errors.New("shim: no command to run")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return State{}, fmt.Errorf("shim: %w", err)
	}
	dir = abs
	if st, err := Read(dir); err == nil && st.Running {
		return st, fmt.Errorf("shim: workload in %s is still running (pid %d)", dir, st.PID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return State{}, fmt.Errorf("shim: %w", err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return State{}, fmt.Errorf("shim: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, specFile), b); err != nil {
		return State{}, err
	}
	sh, err := takeShim()
	if err != nil {
		return State{}, err
	}
	defer sh.report.Close()
	_, err = fmt.Fprintln(sh.ctl, dir)
	sh.ctl.Close()
	// Start the next spare once this start is done with the CPU (a shim
	// starting beside the runtime slows the runtime down on small hosts).
	time.AfterFunc(refillDelay, refillSpare)
	if err != nil {
		return State{}, fmt.Errorf("shim: hand %s to a shim: %w", dir, err)
	}
	msg, _ := io.ReadAll(sh.report)
	reply := strings.TrimSpace(string(msg))
	if reply == "ok" {
		return Read(dir)
	}
	exited := sh.exited
	<-exited // a shim that failed exits at once; return with nothing running
	st, _ := Read(dir)
	if m, ok := strings.CutPrefix(reply, "error: "); ok {
		return st, errors.New(m)
	}
	return st, fmt.Errorf("shim: exited before starting the workload (%q); see %s", reply, dir)
}

// Read returns the recorded state of the shim in dir. A shim that died
// without recording an exit is reported as not running with Error
// ErrShimDied and ExitCode 255. A missing dir or state wraps
// os.ErrNotExist.
func Read(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return State{}, fmt.Errorf("shim: read state: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return State{}, fmt.Errorf("shim: corrupt %s: %w", filepath.Join(dir, stateFile), err)
	}
	st := rec.State
	if st.Running && !alive(st.ShimPID, rec.ShimStart) {
		// The shim may have finished just now: read once more.
		if b2, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
			var again record
			if json.Unmarshal(b2, &again) == nil && !again.Running {
				return again.State, nil
			}
		}
		st.Running = false
		st.ExitCode = ExitShimDied
		st.Error = ErrShimDied
	}
	return st, nil
}

// Wait blocks until the workload in dir is no longer running, or ctx ends,
// and returns its state. It works for shims the caller did not start: it
// watches state.json with inotify (falling back to polling) and checks
// every second that the shim is still alive.
func Wait(ctx context.Context, dir string) (State, error) {
	w := watchDir(dir) // nil: poll
	if w != nil {
		defer w.Close()
		// Wake a blocked read when ctx ends.
		stop := context.AfterFunc(ctx, func() { _ = w.SetReadDeadline(time.Now()) })
		defer stop()
	}
	buf := make([]byte, 4096)
	for {
		st, err := Read(dir)
		if err != nil || !st.Running {
			return st, err
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if w == nil {
			select {
			case <-ctx.Done():
				return st, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		// An event (state.json replaced) or a second passing both lead to
		// a fresh Read; the second catches a shim that died silently.
		_ = w.SetReadDeadline(time.Now().Add(time.Second))
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		_, _ = w.Read(buf)
	}
}

// watchDir returns an inotify file reporting files moved into or written
// in dir, or nil if inotify is unavailable.
func watchDir(dir string) *os.File {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "inotify:"+dir)
}

// writeFileAtomic replaces path with b: write a temp file, fsync, rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("shim: write %s: %w", path, err)
	}
	return nil
}

// writeState records rec in dir.
func writeState(dir string, rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), b)
}
