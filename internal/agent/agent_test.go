package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/mock"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

const image = "mock/app:1"

type env struct {
	t     *testing.T
	store *bolt.Store
	drv   *mock.Driver
}

func newEnv(t *testing.T) *env {
	st := bolttest.Open(t)
	return &env{t: t, store: st, drv: mock.New(mock.Options{Node: "n1", Images: []string{image}})}
}

// runAgent runs an agent for node n1 until the returned stop is called.
func (e *env) runAgent() (stop func()) { return e.runAgentOn(e.store) }

// runAgentOn is runAgent with the agent using s (a view of e.store).
func (e *env) runAgentOn(s store.Store) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Options{Store: s, Drivers: map[string]driver.Driver{"mock": e.drv}, NodeName: "n1",
		Events: events.NewRecorder(s, nil), Heartbeat: time.Hour})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("agent: %v", err)
		}
	}
}

// place stores revision 1 of an app with the given command and restart
// stop asks for in to be stopped, as the deployment controller does.
func (e *env) stop(in model.Instance) {
	e.t.Helper()
	if _, err := store.Update(context.Background(), e.store, in.Key(), func(i *model.Instance) error {
		i.Desired = model.DesiredStop
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// policy, and one instance of it placed on n1.
func (e *env) place(id string, command []string, restart *model.RestartPolicy) model.Instance {
	spec := model.AppSpec{Name: "app", Namespace: "default", Image: image, Command: command, Driver: "mock", Restart: restart,
		StopGracePeriod: model.D(time.Second)}
	rev := model.Revision{Namespace: "default", App: "app", Number: 1, Spec: spec}
	ctx := context.Background()
	if _, err := store.PutJSON(ctx, e.store, model.RevisionKey("default", "app", 1), rev, 0); err != nil && !strings.Contains(err.Error(), "conflict") {
		e.t.Fatal(err)
	}
	in := model.Instance{ID: id, Namespace: "default", App: "app", Revision: 1, Node: "n1", Desired: model.DesiredRun,
		Status: model.InstanceStatus{State: model.StatePending}}
	if _, err := store.PutJSON(ctx, e.store, in.Key(), in, 0); err != nil {
		e.t.Fatal(err)
	}
	return in
}

func (e *env) instance(in model.Instance) model.Instance {
	o, err := store.GetJSON[model.Instance](context.Background(), e.store, in.Key())
	if err != nil {
		e.t.Fatal(err)
	}
	return o.Value
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s", what)
}

func (e *env) eventReasons() string {
	evs, _, err := events.List(context.Background(), e.store, events.Filter{}, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var rs []string
	for _, ev := range evs {
		rs = append(rs, ev.Reason)
	}
	return strings.Join(rs, ",")
}

func TestCrashLoopRestartsInPlaceWithBackoff(t *testing.T) {
	e := newEnv(t)
	in := e.place("crashy", []string{"print", "boom", ";", "exit", "3"},
		&model.RestartPolicy{Policy: model.RestartOnFailure, InitialDelay: model.D(20 * time.Millisecond), MaxDelay: model.D(80 * time.Millisecond)})
	defer e.runAgent()()
	e.eventually("three restarts", func() bool { return e.instance(in).Status.Restarts >= 3 })
	st := e.instance(in).Status
	if st.Failures < 3 || st.ExitCode != 3 || st.ContainerID == "" {
		t.Fatalf("status %+v", st)
	}
	list, _ := e.drv.List(context.Background())
	if len(list) != 1 {
		t.Fatalf("%d workloads, want the same one restarted in place", len(list))
	}
	if r := e.eventReasons(); !strings.Contains(r, "Exited") || !strings.Contains(r, "Restarted") {
		t.Fatalf("events %s", r)
	}
}

// TestStatusRecordsAddress: the workload's address as the driver reports
// it is the instance's status.ip while it runs, and cleared once stopped.
func TestStatusRecordsAddress(t *testing.T) {
	e := newEnv(t)
	in := e.place("addr", []string{"run"}, nil)
	defer e.runAgent()()
	e.eventually("running with an address", func() bool {
		s := e.instance(in).Status
		return s.State == model.StateRunning && s.IP.IsValid()
	})
	st, err := e.drv.Inspect(context.Background(), e.instance(in).Status.ContainerID)
	if err != nil || st.IP != e.instance(in).Status.IP {
		t.Fatalf("status.ip %v, driver says %v (%v)", e.instance(in).Status.IP, st.IP, err)
	}
	e.stop(in)
	e.eventually("stopped without an address", func() bool {
		s := e.instance(in).Status
		return s.State == model.StateStopped && !s.IP.IsValid()
	})
}

// TestStatusChangeIsOneWrite: the runner writes each status change over
// the instance as it last saw it (listed, watched or written), with one
// compare-and-swap and no read, and the Started event in the same write.
// A start quicker than startingAfter is written once, as running.
func TestStatusChangeIsOneWrite(t *testing.T) {
	e := newEnv(t)
	s := &counting{Store: e.store, prefix: model.PrefixInstances}
	in := e.place("web", []string{"run"}, nil)
	defer e.runAgentOn(s)()
	e.eventually("running", func() bool { return e.instance(in).Status.State == model.StateRunning })
	if gets, txns, conflicts := s.calls(); gets != 0 || txns != 1 || conflicts != 0 {
		t.Fatalf("a quick start: %d reads, %d writes, %d conflicts; want 1 write (running)", gets, txns, conflicts)
	}
	o, err := store.GetJSON[model.Instance](context.Background(), e.store, in.Key())
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := events.List(context.Background(), e.store, events.Filter{Instance: in.ID}, 0)
	if err != nil || len(evs) != 1 || evs[0].Reason != "Started" || evs[0].Seq != o.ModRev {
		t.Fatalf("events %+v (%v), want Started written with the running status at %d", evs, err, o.ModRev)
	}
	e.stop(in)
	e.eventually("stopped", func() bool { return e.instance(in).Status.State == model.StateStopped })
	if gets, txns, conflicts := s.calls(); gets != 0 || txns != 2 || conflicts != 0 {
		t.Fatalf("stopping, stopped: %d reads, %d writes, %d conflicts; want 2 writes", gets, txns, conflicts)
	}
}

func TestExitWithPolicyNeverStaysFailed(t *testing.T) {
	e := newEnv(t)
	in := e.place("once", []string{"exit", "7"}, &model.RestartPolicy{Policy: model.RestartNever})
	defer e.runAgent()()
	e.eventually("failed", func() bool { s := e.instance(in).Status; return s.State == model.StateFailed && s.ExitCode == 7 })
	time.Sleep(100 * time.Millisecond)
	if got := e.instance(in); got.Status.Restarts != 0 || !got.Terminal() {
		t.Fatalf("status %+v", got.Status)
	}
}

func TestReattachAfterAgentRestartDoesNotRestart(t *testing.T) {
	e := newEnv(t)
	in := e.place("steady", []string{"run"}, nil)
	stop := e.runAgent()
	e.eventually("running", func() bool { return e.instance(in).Status.State == model.StateRunning })
	before := e.instance(in).Status
	stop()
	st, err := e.drv.Inspect(context.Background(), before.ContainerID)
	if err != nil || st.State != driver.StateRunning {
		t.Fatalf("workload did not survive the agent: %+v %v", st, err)
	}
	defer e.runAgent()()
	e.eventually("reattached", func() bool { return strings.Contains(e.eventReasons(), "Reattached") })
	after := e.instance(in).Status
	st2, _ := e.drv.Inspect(context.Background(), after.ContainerID)
	if after.ContainerID != before.ContainerID || after.Restarts != 0 || !st2.StartedAt.Equal(st.StartedAt) {
		t.Fatalf("restarted across an agent restart: before %+v after %+v", before, after)
	}
}

func TestDesiredStopStopsAndRemoves(t *testing.T) {
	e := newEnv(t)
	in := e.place("web", []string{"trap-term", ";", "run"}, nil)
	defer e.runAgent()()
	e.eventually("running", func() bool { return e.instance(in).Status.State == model.StateRunning })
	e.stop(in)
	e.eventually("stopped", func() bool { return e.instance(in).Status.State == model.StateStopped })
	if list, _ := e.drv.List(context.Background()); len(list) != 0 {
		t.Fatalf("workloads left: %+v", list)
	}
}

// TestOrphansOfThisNodeOnlyAreRemoved: two nodes share one runtime (as
// two berths share one Docker engine); the agent of n1 removes n1's
// workload whose instance is gone and leaves n2's alone.
func TestOrphansOfThisNodeOnlyAreRemoved(t *testing.T) {
	e := newEnv(t)
	e.drv = mock.New(mock.Options{Images: []string{image}}) // unscoped: sees every node's workloads
	ctx := context.Background()
	start := func(node string) string {
		id, err := e.drv.Start(ctx, driver.Task{InstanceID: "gone-" + node, App: "app", Namespace: "default", Image: image,
			Labels: map[string]string{driver.LabelNode: node}})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	mine, theirs := start("n1"), start("n2")
	defer e.runAgent()()
	e.eventually("orphan removed", func() bool {
		_, err := e.drv.Inspect(ctx, mine)
		return err == driver.ErrNotFound
	})
	if st, err := e.drv.Inspect(ctx, theirs); err != nil || st.State != driver.StateRunning {
		t.Fatalf("another node's workload was touched: %+v %v", st, err)
	}
	// The event is recorded just after the removal; wait for it.
	e.eventually("OrphanRemoved event", func() bool { return strings.Count(e.eventReasons(), "OrphanRemoved") == 1 })
}

// TestSlowStartIsReportedStarting: a start that takes longer than
// startingAfter shows as starting meanwhile, then running.
func TestSlowStartIsReportedStarting(t *testing.T) {
	e := newEnv(t)
	e.drv = mock.New(mock.Options{Node: "n1", Images: []string{image}, StartDelay: 3 * startingAfter})
	in := e.place("slow", []string{"run"}, nil)
	defer e.runAgent()()
	e.eventually("starting", func() bool { return e.instance(in).Status.State == model.StateStarting })
	e.eventually("running", func() bool { return e.instance(in).Status.State == model.StateRunning })
}
