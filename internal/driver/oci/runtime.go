//go:build linux

package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// runtime is one OCI runtime binary with its own state root.
type runtime struct {
	name string
	path string
	// root is the runtime's --root (its container state).
	root string
	// platform is runsc's --platform.
	platform string
}

// argv is the command line for runtime subcommand args, global flags
// first.
func (r *runtime) argv(args ...string) []string {
	out := []string{r.path, "--root", r.root}
	if r.name == Runsc {
		// --oci-seccomp: apply the bundle's seccomp profile inside the
		// sandbox too (runsc ignores it otherwise). The network stays
		// runsc's own netstack inside the bundle's network namespace
		// (--network=sandbox, the default).
		out = append(out, "--platform="+r.platform, "--oci-seccomp")
	}
	return append(out, args...)
}

// run runs a short runtime subcommand and returns its combined output;
// a failure carries the runtime's own message.
func (r *runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	argv := r.argv(args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return out.Bytes(), fmt.Errorf("%s %s: %s", r.name, args[0], msg)
	}
	return out.Bytes(), nil
}

// errNoContainer is returned by state for a container the runtime does
// not know.
var errNoContainer = errors.New("container does not exist")

// containerState is the part of `runtime state` berth reads.
type containerState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// state returns the runtime's view of container id.
func (r *runtime) state(ctx context.Context, id string) (containerState, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		if notExist(string(out)) {
			return containerState{}, errNoContainer
		}
		return containerState{}, err
	}
	var st containerState
	if err := json.Unmarshal(out, &st); err != nil {
		return containerState{}, fmt.Errorf("%s state: %w", r.name, err)
	}
	return st, nil
}

// kill signals the container's init, or every process with all.
func (r *runtime) kill(ctx context.Context, id, signal string, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	out, err := r.run(ctx, append(args, id, signal)...)
	if err != nil && (notExist(string(out)) || notRunning(string(out))) {
		return errNoContainer
	}
	return err
}

// delete removes the container, killing it first if needed. Deleting a
// container the runtime does not know is not an error.
func (r *runtime) delete(ctx context.Context, id string) error {
	out, err := r.run(ctx, "delete", "--force", id)
	if err != nil && notExist(string(out)) {
		return nil
	}
	return err
}

// notExist recognises the runtimes' "no such container" messages.
func notExist(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") ||
		strings.Contains(msg, "no such file") || strings.Contains(msg, "cannot load container")
}

// notRunning recognises "container not running" messages of kill.
func notRunning(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "not running") || strings.Contains(msg, "process already finished") ||
		strings.Contains(msg, "no such process") || strings.Contains(msg, "is stopped")
}
