//go:build linux

package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Exec runs spec to completion, attached, the way Launch starts a workload
// (network namespace, cgroups, credential, environment and working dir are
// entered before exec), with stdout and stderr both written to out. It
// returns the exit code (128+N when killed by signal N); the error is only
// for a command that could not be started (e.g. `exec: "nosuch":
// executable file not found in $PATH`) or a ctx that ended, which kills
// the command's process group. Log settings in spec are ignored.
func Exec(ctx context.Context, spec Spec, out io.Writer) (int, error) {
	if len(spec.Args) == 0 || spec.Args[0] == "" {
		return -1, errors.New("shim: no command to run")
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return -1, fmt.Errorf("shim: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("shim: %w", err)
	}
	defer r.Close()
	cmd := selfCommand("berth-exec")
	cmd.Env = []string{envExecSpec + "=" + string(js)}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output a background process keeps open must not hold Exec forever.
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Start()
	w.Close()
	if err != nil {
		return -1, fmt.Errorf("shim: start exec stage (%s): %w", selfExe, err)
	}
	msg, _ := io.ReadAll(r)
	if len(msg) > 0 {
		_ = cmd.Wait()
		return -1, errors.New(strings.TrimSpace(string(msg)))
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	waitErr := cmd.Wait()
	close(done)
	code := exitCode(cmd.ProcessState, waitErr)
	if ctx.Err() != nil {
		return code, ctx.Err()
	}
	return code, nil
}
