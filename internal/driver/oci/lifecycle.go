//go:build linux

package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/shim"
	"github.com/berth-dev/berth/internal/rootfs"
)

// killWait bounds how long Stop and Remove wait for a workload to go away
// after SIGKILL before they kill its runtime process directly.
const killWait = 10 * time.Second

// Start implements driver.Driver: prepare the root filesystem, attach the
// network, write the bundle and run it under a shim. On failure
// everything made so far is undone and the runtime's message returned.
func (d *Driver) Start(ctx context.Context, t driver.Task) (string, error) {
	id := t.InstanceID
	if err := checkID(id); err != nil {
		return "", err
	}
	rt, err := d.runtime(t.Runtime)
	if err != nil {
		return "", err
	}
	if len(t.Ports) > 0 && d.o.Network == nil {
		return "", fmt.Errorf("task %s publishes ports but the oci driver has no node network configured", id)
	}
	unlock := d.lock(id)
	defer unlock()
	if _, err := os.Stat(d.dir(id)); err == nil {
		// A leftover of the same instance (a crash mid-start): it is ours
		// by name, so replace it.
		if err := d.remove(ctx, id); err != nil {
			return "", err
		}
	}
	r := record{ID: id, Task: t, Runtime: rt.name, Labels: driver.WorkloadLabels(t, d.o.Node), CreatedAt: time.Now().UTC()}
	if err := os.MkdirAll(filepath.Join(d.dir(id), bundleDir), 0o700); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	if err := d.save(r); err != nil {
		_ = os.RemoveAll(d.dir(id))
		return "", err
	}
	err = d.prepare(ctx, &r)
	if err == nil {
		err = d.save(r)
	}
	if err == nil {
		err = d.launch(ctx, rt, id, false)
	}
	if err != nil {
		if rerr := d.remove(context.WithoutCancel(ctx), id); rerr != nil {
			err = fmt.Errorf("%w (cleaning up: %v)", err, rerr)
		}
		return "", err
	}
	return id, nil
}

// prepare makes (or, after a restart of the node, re-makes) what the
// bundle needs: the root filesystem, the network attachment, the /etc
// files and config.json. Every step is idempotent.
func (d *Driver) prepare(ctx context.Context, r *record) error {
	t := r.Task
	pctx := ctx
	if a := t.RegistryAuth; a != nil {
		pctx = rootfs.WithCredentials(ctx, rootfs.Credentials{Username: a.Username, Password: a.Password, DockerConfig: a.DockerConfig})
	}
	m, err := d.o.RootFS.Prepare(pctx, t.Image, r.ID)
	if err != nil {
		return err
	}
	if d.o.Network != nil {
		att, err := d.o.Network.Attach(ctx, r.ID, t.Ports)
		if err != nil {
			return err
		}
		r.NetNS, r.IP = att.NetNS, att.IP
	}
	bundle := filepath.Join(d.dir(r.ID), bundleDir)
	dns := d.o.DNS
	if d.o.DNSFrom != nil {
		dns = d.o.DNSFrom(ctx)
	}
	if err := writeEtcFiles(bundle, etcInput{Hostname: Hostname(r.ID), IP: r.IP, HostResolvConf: d.o.ResolvConf,
		DNS: dns, Namespace: t.Namespace}); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	spec, err := Spec(SpecInput{Task: t, Image: m.Config, RootFS: m.Path, NetNS: r.NetNS, BundleDir: bundle,
		Annotations: r.Labels, PidsLimit: d.o.PidsLimit, NoSwapLimit: !swapAccounting()})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("oci: write bundle: %w", err)
	}
	return nil
}

// launch runs the bundle in the foreground of the runtime under a shim
// and waits until the container exists (the runtime wrote its pid file)
// or the runtime gave up. again says the runtime may still know a
// container of this ID from an earlier run.
func (d *Driver) launch(ctx context.Context, rt *runtime, id string, again bool) error {
	if rt.name == Crun {
		if err := ensureHybridCgroups(); err != nil {
			return err
		}
	}
	bundle := filepath.Join(d.dir(id), bundleDir)
	pid := filepath.Join(d.dir(id), pidFile)
	if again {
		// A container of this ID the runtime still knows (its runtime
		// was killed) would make run fail.
		_ = rt.delete(ctx, id)
	}
	if err := os.Remove(pid); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("oci: %w", err)
	}
	spec := shim.Spec{Args: rt.argv("run", "--bundle", bundle, "--pid-file", pid, id),
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Dir: bundle,
		LogMaxBytes: d.o.LogMaxBytes, LogMaxFiles: d.o.LogMaxFiles}
	if _, err := shim.Launch(d.shimDir(id), spec); err != nil {
		return fmt.Errorf("start %s: %w", rt.name, err)
	}
	created := false
	// Poll every millisecond at first (a stat and a small read): most
	// containers exist within tens of ms, and a coarser poll would add
	// its own latency to every start.
	poll := time.Millisecond
	fastUntil := time.Now().Add(500 * time.Millisecond)
	for {
		if !created {
			_, err := os.Stat(pid)
			created = err == nil
		}
		if created && rt.name != Runsc {
			// runc and crun check the command before they write the pid
			// file: the container exists and its process will run.
			return nil
		}
		if created {
			// runsc writes the pid file for the sandbox and only then
			// loads the command: wait until the runtime reports the
			// container running, or for its exit ("stopped" is also
			// what a failed start looks like for a moment).
			if cs, err := rt.state(ctx, id); err == nil && (cs.Status == "running" || cs.Status == "paused") {
				return nil
			}
		}
		st, err := shim.Read(d.shimDir(id))
		if err != nil {
			return fmt.Errorf("oci: %w", err)
		}
		if !st.Running {
			msg := d.runtimeMessage(id, st)
			if _, err := os.Stat(pid); err == nil && !runscStartFailed(rt, st, msg) {
				return nil // started and already exited
			}
			return fmt.Errorf("%s could not start the container: %s", rt.name, msg)
		}
		select {
		case <-ctx.Done():
			d.killRuntime(id)
			return ctx.Err()
		case <-time.After(poll):
		}
		if time.Now().After(fastUntil) {
			poll = 10 * time.Millisecond
		}
	}
}

// runscStartFailed tells runsc's own failure to start the command (it
// exits 128 with "running container: …") from a workload that ran and
// exited.
func runscStartFailed(rt *runtime, st shim.State, msg string) bool {
	return rt.name == Runsc && st.ExitCode == 128 && strings.Contains(msg, "running container: ")
}

// logfmtMsg finds the msg="…" of a logfmt line (runc logs its errors so).
var logfmtMsg = regexp.MustCompile(`\bmsg=("(?:[^"\\]|\\.)*")`)

// runtimeMessage is what the runtime printed before it gave up (the last
// lines of the log), or the shim's error.
func (d *Driver) runtimeMessage(id string, st shim.State) string {
	rc, err := shim.Logs(context.Background(), d.shimDir(id), driver.LogOptions{Tail: 5})
	if err == nil {
		b, _ := io.ReadAll(io.LimitReader(rc, 4096))
		rc.Close()
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if m := logfmtMsg.FindStringSubmatch(l); m != nil {
				if u, err := strconv.Unquote(m[1]); err == nil {
					l = u
				}
			}
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			return strings.Join(lines, "; ")
		}
	}
	if st.Error != "" {
		return st.Error
	}
	return fmt.Sprintf("exit code %d", st.ExitCode)
}

// Restart implements driver.Driver: the same bundle runs again under the
// same ID; logs continue.
func (d *Driver) Restart(ctx context.Context, id string) error {
	unlock := d.lock(id)
	defer unlock()
	r, err := d.load(id)
	if err != nil {
		return err
	}
	if st, err := shim.Read(d.shimDir(id)); err == nil && st.Running {
		return nil
	}
	rt, err := d.runtime(r.Runtime)
	if err != nil {
		return err
	}
	if err := d.prepare(ctx, &r); err != nil {
		return err
	}
	if err := d.save(r); err != nil {
		return err
	}
	return d.launch(ctx, rt, id, true)
}

// Stop implements driver.Driver: SIGTERM to the container's init, SIGKILL
// to all its processes after grace.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	unlock := d.lock(id)
	defer unlock()
	r, err := d.load(id)
	if err != nil {
		return err
	}
	rt, err := d.runtime(r.Runtime)
	if err != nil {
		return err
	}
	st, err := shim.Read(d.shimDir(id))
	if err != nil || !st.Running {
		return d.reapOrphan(ctx, rt, id)
	}
	if err := rt.kill(ctx, id, "TERM", false); err != nil && !errors.Is(err, errNoContainer) {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, grace)
	st, _ = shim.Wait(wctx, d.shimDir(id))
	cancel()
	if !st.Running {
		return nil
	}
	return d.kill(ctx, rt, id)
}

// reapOrphan kills and deletes a container the runtime still runs
// although its shim is gone (the shim was killed): nothing supervises or
// logs it any more, so a stop ends it.
func (d *Driver) reapOrphan(ctx context.Context, rt *runtime, id string) error {
	cs, err := rt.state(ctx, id)
	if err != nil || cs.Status == "stopped" {
		return nil
	}
	if err := rt.kill(ctx, id, "KILL", true); err != nil && !errors.Is(err, errNoContainer) {
		return err
	}
	return rt.delete(ctx, id)
}

// kill sends SIGKILL to every process of the container and waits for the
// runtime to exit; a runtime that does not is killed itself.
func (d *Driver) kill(ctx context.Context, rt *runtime, id string) error {
	if err := rt.kill(ctx, id, "KILL", true); err != nil && !errors.Is(err, errNoContainer) {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if st, _ := shim.Wait(wctx, d.shimDir(id)); !st.Running {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	d.killRuntime(id)
	wctx2, cancel2 := context.WithTimeout(ctx, killWait)
	defer cancel2()
	if st, _ := shim.Wait(wctx2, d.shimDir(id)); st.Running {
		return fmt.Errorf("workload %s did not exit after SIGKILL", id)
	}
	return nil
}

// killRuntime kills the runtime process the shim started (our child's
// process group), for a runtime that no longer reacts.
func (d *Driver) killRuntime(id string) {
	if st, err := shim.Read(d.shimDir(id)); err == nil && st.Running && st.PID > 0 {
		_ = syscall.Kill(-st.PID, syscall.SIGKILL)
	}
}

// Remove implements driver.Driver: kill, delete the container, detach
// the network, release the root filesystem and delete the directory.
func (d *Driver) Remove(ctx context.Context, id string) error {
	if checkID(id) != nil {
		return nil
	}
	unlock := d.lock(id)
	defer unlock()
	return d.remove(ctx, id)
}

// remove does Remove's work; the caller holds id's lock.
func (d *Driver) remove(ctx context.Context, id string) error {
	if _, err := os.Stat(d.dir(id)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	r, err := d.load(id)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return err
	}
	var errs []error
	if rt, rerr := d.runtime(r.Runtime); err == nil && rerr == nil {
		if st, serr := shim.Read(d.shimDir(id)); serr == nil && st.Running {
			if kerr := d.kill(ctx, rt, id); kerr != nil {
				errs = append(errs, kerr)
			}
		}
		if derr := rt.delete(ctx, id); derr != nil {
			errs = append(errs, derr)
		}
	}
	if d.o.Network != nil {
		if nerr := d.o.Network.Detach(ctx, id); nerr != nil {
			errs = append(errs, nerr)
		}
	}
	if rerr := d.o.RootFS.Release(ctx, id); rerr != nil {
		errs = append(errs, rerr)
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove %s: %w", id, errors.Join(errs...))
	}
	if err := os.RemoveAll(d.dir(id)); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}
