//go:build linux

package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// runscVersion is the gVisor module version scripts/runsc.sh installs.
const runscVersion = "v0.0.0-20260905035102-160fafc42237"

var runscBuild struct {
	once sync.Once
	path string
	err  error
}

// requireRuntime returns the binary of runtime name, or skips (fails
// under CI=true) when it is not installed. runsc is looked up in
// $BERTH_RUNSC, PATH and scripts/runsc.sh's cache, and built into that
// cache with `go install` when it is nowhere.
func requireRuntime(t testing.TB, name string) string {
	t.Helper()
	var p string
	var err error
	if name == Runsc {
		p, err = findRunsc()
	} else {
		p, err = exec.LookPath(name)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

func runscCache() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "berth", "runsc-"+runscVersion)
}

func findRunsc() (string, error) {
	if p := os.Getenv("BERTH_RUNSC"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("runsc"); err == nil {
		return p, nil
	}
	cached := filepath.Join(runscCache(), "runsc")
	if isExecutable(cached) {
		return cached, nil
	}
	runscBuild.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install", "gvisor.dev/gvisor/runsc@"+runscVersion)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+runscCache())
		if out, err := cmd.CombinedOutput(); err != nil {
			runscBuild.err = &buildError{err: err, out: string(out)}
			return
		}
		runscBuild.path = cached
	})
	return runscBuild.path, runscBuild.err
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "building runsc: " + e.err.Error() + ": " + e.out }
