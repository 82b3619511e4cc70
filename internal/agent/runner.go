package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// runner drives one instance through its states:
//
//	pending → starting → running → (exit) → failed/stopped, restarted per
//	policy after a backoff → ... ; desired stop → stopping → stopped.
//
// One goroutine (run) owns the workload; update and markDeleted may be
// called from any goroutine and only wake it.
type runner struct {
	a   *Agent
	id  string
	key string

	mu      sync.Mutex
	latest  store.Object[model.Instance] // as last seen in the store or written
	deleted bool
	wake    chan struct{}

	// Owned by the run goroutine.
	cid         string // workload handle, "" when none
	failures    int    // consecutive failures, for backoff
	handledExit time.Time
	reattached  bool

	// statusMu guards unsent and unsentEvents: status changes not yet
	// stored, and the events explaining them.
	statusMu     sync.Mutex
	unsent       []func(*model.InstanceStatus)
	unsentEvents []store.Op
}

func newRunner(a *Agent, o store.Object[model.Instance], w *workload) *runner {
	in := o.Value
	r := &runner{a: a, id: in.ID, key: in.Key(), latest: o, wake: make(chan struct{}, 1)}
	switch {
	case w != nil:
		r.cid = w.status.ID
		r.reattached = w.status.State == driver.StateRunning
	default:
		r.cid = in.Status.ContainerID
	}
	return r
}

func decodeInstance(b []byte) (model.Instance, error) {
	var in model.Instance
	err := json.Unmarshal(b, &in)
	return in, err
}

// update records the latest stored instance (an older revision, from a
// lagging watch, is ignored); it wakes the runner only when what the
// controllers want changed (not on our own status writes).
func (r *runner) update(o store.Object[model.Instance]) {
	r.mu.Lock()
	if o.ModRev < r.latest.ModRev {
		r.mu.Unlock()
		return
	}
	changed := o.Value.Desired != r.latest.Value.Desired
	r.latest = o
	r.mu.Unlock()
	if changed {
		r.poke()
	}
}

func (r *runner) markDeleted() {
	r.mu.Lock()
	r.deleted = true
	r.mu.Unlock()
	r.poke()
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *runner) current() (model.Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest.Value, r.deleted
}

func (r *runner) wantsRun() bool {
	in, deleted := r.current()
	return !deleted && in.Desired == model.DesiredRun
}

// waitWake waits for a wake-up, ctx, or d (d < 0: no timeout). It
// returns true if woken.
func (r *runner) waitWake(ctx context.Context, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.wake:
		return true
	case <-ctx.Done():
	case <-timeout:
	}
	return false
}

func (r *runner) run(ctx context.Context) {
	for ctx.Err() == nil {
		in, deleted := r.current()
		if deleted || in.Desired == model.DesiredStop {
			r.stop(ctx, &in, deleted)
			if deleted {
				return
			}
			r.waitWake(ctx, -1)
			continue
		}
		r.step(ctx, &in)
	}
}

// step advances a should-run instance by one phase and returns when the
// caller should look at the desired state again.
func (r *runner) step(ctx context.Context, in *model.Instance) {
	spec, drv, err := r.resolve(ctx, in)
	if err != nil {
		r.setStatus(ctx, func(s *model.InstanceStatus) {
			s.State, s.Message, s.NextRestartAt = model.StateFailed, err.Error(), nil
		})
		r.waitWake(ctx, 5*time.Second)
		return
	}
	if r.cid == "" {
		r.start(ctx, in, spec, drv)
		return
	}
	st, err := drv.Inspect(ctx, r.cid)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		r.a.o.Events.Warning(ctx, in, "WorkloadGone", "workload %s disappeared; starting a new one", shortID(r.cid))
		r.cid = ""
	case err != nil:
		r.setStatus(ctx, func(s *model.InstanceStatus) { s.Message = "inspect: " + err.Error() })
		r.waitWake(ctx, 2*time.Second)
	case st.State == driver.StateRunning:
		if r.reattached {
			r.reattached = false
			r.adopt(ctx, in, spec, st)
		}
		r.supervise(ctx, in, spec, drv)
	default:
		r.exited(ctx, in, spec, drv, st)
	}
}

// resolve finds the spec and driver of an instance.
func (r *runner) resolve(ctx context.Context, in *model.Instance) (*model.AppSpec, driver.Driver, error) {
	spec, err := r.a.spec(ctx, in)
	if err != nil {
		return nil, nil, err
	}
	drv, ok := r.a.drivers[spec.Driver]
	if !ok {
		return nil, nil, fmt.Errorf("driver %q is not available on node %s", spec.Driver, r.a.o.NodeName)
	}
	return spec, drv, nil
}

// startingAfter is how long a start runs before it is reported as
// starting: a quicker start is reported once, as running (or failed),
// which halves the status writes of a fleet starting many instances.
const startingAfter = 250 * time.Millisecond

func (r *runner) start(ctx context.Context, in *model.Instance, spec *model.AppSpec, drv driver.Driver) {
	started := r.reportStartingAfter(ctx, startingAfter)
	defer started()
	task := r.task(in, spec)
	var cid string
	auth, err := r.a.registryAuth(ctx, in.Namespace, spec.ImagePullSecret)
	if err == nil {
		task.Env, err = r.a.withBindings(ctx, in.Namespace, spec, task.Env)
	}
	if err == nil {
		task.RegistryAuth = auth
		cid, err = drv.Start(ctx, task)
	}
	started() // what follows is written after starting, if that was
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.failures++
		delay := restartDelay(spec.Restart, r.failures)
		r.a.o.Events.Warning(ctx, in, "FailedStart", "%v (retrying in %s)", err, delay)
		r.backoff(ctx, model.StateFailed, err.Error(), 0, delay)
		return
	}
	r.cid = cid
	now := time.Now()
	ip := r.workloadIP(ctx, drv, cid)
	r.setStatus(ctx, func(s *model.InstanceStatus) {
		s.State, s.ContainerID, s.Message, s.ExitCode = model.StateRunning, cid, "", 0
		s.IP = ip
		s.StartedAt, s.NextRestartAt = &now, nil
		s.Health = initialHealth(spec)
	}, r.event(in, "Started", "started workload %s", shortID(cid))...)
}

// reportStartingAfter writes the starting status once d has passed,
// unless the returned func (the start's end) comes first; it waits for a
// write in progress, so starting never lands after what followed it.
func (r *runner) reportStartingAfter(ctx context.Context, d time.Duration) (done func()) {
	var mu sync.Mutex
	ended := false
	t := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			r.setStatus(ctx, func(s *model.InstanceStatus) {
				s.State, s.Message, s.NextRestartAt = model.StateStarting, "", nil
			})
		}
	})
	return func() { // idempotent
		t.Stop()
		mu.Lock()
		ended = true
		mu.Unlock()
	}
}

// adopt takes over a workload found running after an agent restart.
func (r *runner) adopt(ctx context.Context, in *model.Instance, spec *model.AppSpec, st driver.Status) {
	started := st.StartedAt
	r.setStatus(ctx, func(s *model.InstanceStatus) {
		if s.State != model.StateRunning || s.ContainerID != st.ID {
			s.State, s.ContainerID, s.StartedAt, s.NextRestartAt = model.StateRunning, st.ID, &started, nil
			s.Health = initialHealth(spec)
		}
		s.IP = st.IP
	}, r.event(in, "Reattached", "reattached to running workload %s", shortID(st.ID))...)
}

func initialHealth(spec *model.AppSpec) string {
	if spec.Health == nil {
		return model.HealthNone
	}
	return model.HealthUnknown
}

// supervise runs health checks and waits until the workload exits or the
// instance should stop.
func (r *runner) supervise(ctx context.Context, in *model.Instance, spec *model.AppSpec, drv driver.Driver) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited := make(chan driver.Status, 1)
	go func() {
		st, err := drv.Wait(sctx, r.cid)
		if err == nil {
			exited <- st
		}
	}()
	if spec.Health != nil {
		go r.checkHealth(sctx, in, spec, drv, r.cid)
	}
	stable := time.NewTimer(stableAfter(spec))
	defer stable.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stable.C:
			// Ran long enough: past failures no longer count.
			if r.failures > 0 {
				r.failures = 0
				r.setStatus(ctx, func(s *model.InstanceStatus) { s.Failures = 0 })
			}
		case st := <-exited:
			r.exited(ctx, in, spec, drv, st)
			return
		case <-r.wake:
			if !r.wantsRun() {
				return
			}
		}
	}
}

// exited applies the restart policy to a workload that is not running.
func (r *runner) exited(ctx context.Context, in *model.Instance, spec *model.AppSpec, drv driver.Driver, st driver.Status) {
	if !st.FinishedAt.IsZero() && st.FinishedAt.Equal(r.handledExit) {
		r.waitWake(ctx, -1) // already handled; terminal until told otherwise
		return
	}
	r.handledExit = st.FinishedAt
	msg := fmt.Sprintf("exited with code %d", st.ExitCode)
	if st.Error != "" {
		msg += ": " + st.Error
	}
	state := model.StateStopped
	if st.ExitCode != 0 {
		state = model.StateFailed
	}
	if !shouldRestart(spec.Restart, st.ExitCode) {
		r.a.o.Events.Warning(ctx, in, "Exited", "%s; restart policy %s: not restarting", msg, policyName(spec))
		r.failures++
		failures := r.failures
		r.setStatus(ctx, func(s *model.InstanceStatus) {
			s.State, s.Message, s.ExitCode, s.NextRestartAt = state, msg, st.ExitCode, nil
			s.Failures = failures
			s.Health = initialHealth(spec)
		})
		r.waitWake(ctx, -1)
		return
	}
	r.failures++
	delay := restartDelay(spec.Restart, r.failures)
	r.a.o.Events.Warning(ctx, in, "Exited", "%s; restarting in %s", msg, delay)
	if !r.backoff(ctx, state, msg, st.ExitCode, delay) || !r.wantsRun() {
		return
	}
	if err := drv.Restart(ctx, r.cid); err != nil {
		r.a.o.Events.Warning(ctx, in, "FailedRestart", "%v; creating a new workload", err)
		_ = drv.Remove(ctx, r.cid)
		r.cid = ""
		return
	}
	now := time.Now()
	ip := r.workloadIP(ctx, drv, r.cid) // a restarted container may get a new address
	r.setStatus(ctx, func(s *model.InstanceStatus) {
		s.State, s.Message, s.NextRestartAt, s.StartedAt = model.StateRunning, "", nil, &now
		s.IP = ip
		s.Restarts++
		s.Health = initialHealth(spec)
	}, r.event(in, "Restarted", "restarted workload %s (restart policy %s)", shortID(r.cid), policyName(spec))...)
}

// backoff records a failure with its next restart time and waits it out.
// It returns false if woken or cancelled before the delay passed and the
// instance should no longer run.
func (r *runner) backoff(ctx context.Context, state, msg string, code int, delay time.Duration) bool {
	next := time.Now().Add(delay)
	failures := r.failures
	r.setStatus(ctx, func(s *model.InstanceStatus) {
		s.State, s.Message, s.ExitCode, s.NextRestartAt = state, msg, code, &next
		s.Failures = failures
		if s.Health != model.HealthNone {
			s.Health = model.HealthUnknown
		}
	})
	for time.Now().Before(next) {
		if !r.waitWake(ctx, time.Until(next)) {
			break
		}
		if !r.wantsRun() {
			return false
		}
	}
	return ctx.Err() == nil
}

// stableAfter is how long a workload must run before its past failures
// are forgiven (and the backoff starts over): the restart policy's
// MaxDelay, at most 10s.
func stableAfter(spec *model.AppSpec) time.Duration {
	d := model.DefaultRestartMax
	if spec.Restart != nil && spec.Restart.MaxDelay.Duration > 0 {
		d = spec.Restart.MaxDelay.Duration
	}
	return min(d, 10*time.Second)
}

func policyName(spec *model.AppSpec) string {
	if spec.Restart == nil || spec.Restart.Policy == "" {
		return model.RestartAlways
	}
	return spec.Restart.Policy
}

// deregistrationDelay is how long stop waits between the router dropping
// an instance (desired stop) and SIGTERM, capped by the stop grace period.
const deregistrationDelay = time.Second

// stop ends the workload gracefully and removes it.
func (r *runner) stop(ctx context.Context, in *model.Instance, deleted bool) {
	if r.cid == "" {
		if !deleted && in.Status.State != model.StateStopped && in.Status.State != model.StateLost {
			r.setStatus(ctx, func(s *model.InstanceStatus) {
				s.State, s.NextRestartAt = model.StateStopped, nil
			})
		}
		return
	}
	grace := model.DefaultStopGracePeriod
	drv := r.a.drivers[model.DefaultDriver]
	if spec, d, err := r.resolve(ctx, in); err == nil {
		drv = d
		if spec.StopGracePeriod.Duration > 0 {
			grace = spec.StopGracePeriod.Duration
		}
	}
	if drv == nil {
		return
	}
	if !deleted {
		r.setStatus(ctx, func(s *model.InstanceStatus) { s.State = model.StateStopping })
	}
	// The router drops the instance as soon as desired flips to stop;
	// give requests it already sent there a moment before SIGTERM.
	deregister := time.NewTimer(min(deregistrationDelay, grace))
	select {
	case <-ctx.Done():
	case <-deregister.C:
	}
	deregister.Stop()
	if err := drv.Stop(ctx, r.cid, grace); err != nil && !errors.Is(err, driver.ErrNotFound) {
		r.a.o.Events.Warning(ctx, in, "FailedStop", "%v", err)
	}
	if err := drv.Remove(ctx, r.cid); err != nil {
		r.a.o.Events.Warning(ctx, in, "FailedRemove", "%v", err)
		return
	}
	r.a.o.Events.Normal(ctx, in, "Stopped", "stopped and removed workload %s", shortID(r.cid))
	r.cid = ""
	if !deleted {
		r.setStatus(ctx, func(s *model.InstanceStatus) {
			s.State, s.NextRestartAt, s.Health = model.StateStopped, nil, model.HealthNone
			s.IP = netip.Addr{}
		})
	}
}

// workloadIP is the workload's own address as its driver reports it;
// invalid when it has none or the driver cannot say.
func (r *runner) workloadIP(ctx context.Context, drv driver.Driver, cid string) netip.Addr {
	st, err := drv.Inspect(ctx, cid)
	if err != nil {
		return netip.Addr{}
	}
	return st.IP
}

// setStatus changes the stored status, committing events (ops of
// runner.event) in the same write; a deleted instance is ignored. It
// writes over the instance as last seen, with one compare-and-swap, and
// reads it again only if it changed since. Changes that could not be
// written (the server unreachable) are kept and written, in order, with
// the next change or by retryStatus, so the stored status catches up
// after an outage.
func (r *runner) setStatus(ctx context.Context, mutate func(*model.InstanceStatus), events ...store.Op) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if mutate != nil {
		r.unsent = append(r.unsent, mutate)
	}
	r.unsentEvents = append(r.unsentEvents, events...)
	if len(r.unsent) == 0 {
		return
	}
	r.mu.Lock()
	known := r.latest
	r.mu.Unlock()
	o, err := r.a.status.update(ctx, r.key, known, func(in *model.Instance) error {
		for _, m := range r.unsent {
			m(&in.Status)
		}
		in.Status.UpdatedAt = time.Now()
		return nil
	}, r.unsentEvents...)
	if err == nil {
		r.update(o)
	}
	if err == nil || errors.Is(err, store.ErrNotFound) {
		r.unsent, r.unsentEvents = nil, nil
		return
	}
	if ctx.Err() == nil {
		r.a.o.Log.Warn("update instance status; will retry", "instance", r.id, "err", err)
	}
}

// event is the op recording a Normal event about in, for setStatus to
// commit with the status change it explains.
func (r *runner) event(in *model.Instance, reason, format string, args ...any) []store.Op {
	if op, ok := r.a.o.Events.InstanceOp(in, reason, format, args...); ok {
		return []store.Op{op}
	}
	return nil
}

// retryStatus writes status changes an earlier setStatus could not.
func (r *runner) retryStatus(ctx context.Context) { r.setStatus(ctx, nil) }

// task builds the driver's view of an instance.
func (r *runner) task(in *model.Instance, spec *model.AppSpec) driver.Task {
	t := driver.Task{InstanceID: in.ID, Namespace: in.Namespace, App: in.App, Revision: in.Revision,
		Image: spec.Image, Command: spec.Command, Args: spec.Args, Env: spec.Env,
		CPUMilli: int64(spec.Resources.CPU), MemoryBytes: int64(spec.Resources.Memory),
		Runtime: model.RuntimeBinary(spec.Runtime), User: spec.User, WorkingDir: spec.WorkingDir,
		ReadOnlyRootFS: spec.ReadOnlyRootFS, Tmpfs: spec.Tmpfs,
		Labels: make(map[string]string, len(spec.Labels)+len(r.a.o.WorkloadLabels))}
	if len(in.GPUs) > 0 {
		t.Env = withGPUs(spec.Env, in.GPUs)
	}
	for k, v := range spec.Labels {
		t.Labels[k] = v
	}
	for k, v := range r.a.o.WorkloadLabels {
		t.Labels[k] = v
	}
	for _, p := range spec.Ports {
		t.Ports = append(t.Ports, driver.PortBinding{Name: p.Name, ContainerPort: p.ContainerPort,
			HostPort: in.HostPorts[p.Name], Protocol: p.Protocol})
	}
	return t
}

// withGPUs returns env plus the GPU devices the scheduler assigned, in the
// variables the NVIDIA container toolkit and apps read.
func withGPUs(env map[string]string, gpus []int) map[string]string {
	out := make(map[string]string, len(env)+2)
	for k, v := range env {
		out[k] = v
	}
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
	}
	out["NVIDIA_VISIBLE_DEVICES"] = strings.Join(ids, ",")
	out["BERTH_GPUS"] = out["NVIDIA_VISIBLE_DEVICES"]
	return out
}
