//go:build linux

package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

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
// until the workload is running (the overlay root filesystem mounted, the
// bundle written, the shim launched, the runtime's container created and
// started), and, for comparison, how long the runtime alone takes to run
// an equal bundle detached (`<runtime> run --detach`, no berth). Each side
// gets a fresh overlay mount of the same image, prepared (pulled) once
// before either, untimed; the runtime by hand goes first so neither side
// reuses the other's warm mount. Everything it starts is removed before it
// returns.
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
	t := driver.Task{InstanceID: id, Namespace: "bench", App: "bench", Image: o.Image, Command: cmd, Labels: o.Labels,
		Runtime: rt.name, MemoryBytes: 64 << 20, CPUMilli: 500}

	// By hand: berth writes the bundle (untimed), the runtime runs it.
	hand := t
	hand.InstanceID = id + "-byhand"
	r := record{ID: hand.InstanceID, Task: hand, Runtime: rt.name, Labels: driver.WorkloadLabels(hand, d.o.Node), CreatedAt: time.Now().UTC()}
	if err := os.MkdirAll(filepath.Join(d.dir(r.ID), bundleDir), 0o700); err != nil {
		return 0, 0, err
	}
	defer func() {
		if rerr := d.Remove(context.WithoutCancel(ctx), r.ID); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := d.save(r); err != nil {
		return 0, 0, err
	}
	if err := d.prepare(ctx, &r); err != nil {
		return 0, 0, err
	}
	if byHand, err = runByHand(ctx, rt, filepath.Join(d.dir(r.ID), bundleDir), r.ID); err != nil {
		return 0, 0, err
	}

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
	return berth, byHand, nil
}

// runByHand times `<runtime> run --detach` of bundle as container id,
// then deletes the container.
func runByHand(ctx context.Context, rt *runtime, bundle, id string) (time.Duration, error) {
	argv := rt.argv("run", "--detach", "--bundle", bundle, id)
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
