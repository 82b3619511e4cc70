//go:build linux

package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/driver"
)

// BenchOptions configure BenchStart.
type BenchOptions struct {
	// Runtime is the runtime to measure; empty means the driver's default.
	Runtime string
	// Image is the image to run; it is prepared (pulled) before timing.
	Image string
	// Command is a long-running command in Image (default sleep 600).
	Command []string
	// Labels are added to the workload (e.g. berth.test=1).
	Labels map[string]string
}

// BenchStart measures one start under d: how long Driver.Start takes
// until the workload is running (the bundle written, the shim launched,
// the runtime's container created and started), and, for comparison, how
// long the runtime alone takes to run the same bundle detached
// (`<runtime> run --detach`, no berth). The image is prepared once, untimed,
// before either. Everything it starts is removed before it returns.
func BenchStart(ctx context.Context, d *Driver, o BenchOptions) (berth, byHand time.Duration, err error) {
	rt, err := d.runtime(o.Runtime)
	if err != nil {
		return 0, 0, err
	}
	cmd := o.Command
	if len(cmd) == 0 {
		cmd = []string{"sleep", "600"}
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	id := "berth-bench-" + hex.EncodeToString(suffix)
	// Pull outside the timing; Start's Prepare then finds the image.
	warm := id + "-warm"
	if _, err := d.o.RootFS.Prepare(ctx, o.Image, warm); err != nil {
		return 0, 0, err
	}
	_ = d.o.RootFS.Release(context.WithoutCancel(ctx), warm)

	t := driver.Task{InstanceID: id, Namespace: "bench", App: "bench", Image: o.Image, Command: cmd, Labels: o.Labels,
		Runtime: rt.name, MemoryBytes: 64 << 20, CPUMilli: 500}
	begin := time.Now()
	if _, err := d.Start(ctx, t); err != nil {
		return 0, 0, err
	}
	berth = time.Since(begin)
	defer func() {
		if rerr := d.Remove(context.WithoutCancel(ctx), id); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if st, err := d.Inspect(ctx, id); err != nil || st.State != driver.StateRunning {
		return 0, 0, fmt.Errorf("benchmark workload is not running after Start: %+v %v", st, err)
	}
	if err := d.kill(ctx, rt, id); err != nil {
		return 0, 0, err
	}
	byHand, err = runByHand(ctx, rt, filepath.Join(d.dir(id), bundleDir), id+"-byhand")
	return berth, byHand, err
}

// runByHand copies the bundle's config.json to a new bundle (same root
// filesystem and /etc files, its own cgroup) and times `<runtime> run --detach`
// of it, then deletes that container.
func runByHand(ctx context.Context, rt *runtime, bundle, id string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return 0, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return 0, err
	}
	spec.Linux.CgroupsPath = CgroupsPath(id)
	dir, err := os.MkdirTemp(filepath.Dir(filepath.Dir(bundle)), id+"-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if b, err = json.Marshal(&spec); err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
	}
	if err != nil {
		return 0, err
	}
	argv := rt.argv("run", "--detach", "--bundle", dir, id)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	c.Stdin, c.Stdout, c.Stderr = devnull, devnull, devnull
	begin := time.Now()
	err = c.Run()
	elapsed := time.Since(begin)
	derr := rt.delete(context.WithoutCancel(ctx), id)
	if err != nil {
		return 0, fmt.Errorf("%s run -d by hand: %w", rt.name, err)
	}
	return elapsed, errors.Join(derr)
}
