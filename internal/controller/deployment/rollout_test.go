package deployment

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

func ip(v int, pct bool) *model.IntOrPercent { return &model.IntOrPercent{Value: v, Percent: pct} }

func TestSurgeAndUnavailable(t *testing.T) {
	cases := []struct {
		surge, unavail *model.IntOrPercent
		n              int
		wantS, wantU   int
	}{
		{nil, nil, 4, 1, 0},
		{ip(2, false), ip(1, false), 4, 2, 1},
		{ip(25, true), ip(25, true), 10, 3, 2}, // surge rounds up, unavailable down
		{ip(10, true), ip(10, true), 3, 1, 0},
		{ip(0, false), ip(10, true), 3, 1, 0}, // both round to 0: surge 1
		{ip(0, false), ip(1, false), 3, 0, 1},
		{nil, ip(100, true), 3, 0, 3},
	}
	for _, c := range cases {
		spec := model.AppSpec{Rollout: &model.RolloutSpec{MaxSurge: c.surge, MaxUnavailable: c.unavail}}
		s, u := SurgeAndUnavailable(spec.EffectiveRollout(), c.n)
		if s != c.wantS || u != c.wantU {
			t.Errorf("surge %v unavailable %v of %d: got %d/%d, want %d/%d", c.surge, c.unavail, c.n, s, u, c.wantS, c.wantU)
		}
	}
}

// sim drives Plan like the controller does: it applies each decision to
// its instances and rollout, with a clock it moves by hand. New
// instances become ready on the pass after they were created unless
// crash is set for their revision.
type sim struct {
	t       *testing.T
	app     *model.App
	revs    map[int64]model.AppSpec
	insts   []model.Instance
	ro      *model.Rollout
	req     *model.RolloutRequest
	now     time.Time
	crash   map[int64]bool
	seq     int
	events  []RolloutEvent
	creates int
	stats   map[int64]model.RevisionStats
}

func newSim(t *testing.T, n int, ro *model.RolloutSpec) *sim {
	a := &model.App{Namespace: "default", Name: "web", Revision: 1, LatestRevision: 1}
	a.Spec.Instances = &n
	a.Spec.Rollout = ro
	s := &sim{t: t, app: a, now: t0, crash: map[int64]bool{}, revs: map[int64]model.AppSpec{1: {}}}
	for i := 0; i < n; i++ {
		s.add(1, true)
	}
	return s
}

func (s *sim) add(rev int64, ready bool) {
	s.seq++
	started := s.now
	in := model.Instance{ID: fmt.Sprintf("i%02d-r%d", s.seq, rev), Revision: rev, Desired: model.DesiredRun, Node: "n1",
		CreatedAt: s.now.Add(time.Duration(s.seq) * time.Millisecond), Status: model.InstanceStatus{State: model.StateStarting, StartedAt: &started}}
	if ready {
		in.Status.State = model.StateRunning
	}
	s.insts = append(s.insts, in)
}

// deploy makes a new revision.
func (s *sim) deploy() {
	s.app.LatestRevision++
	s.app.Revision = s.app.LatestRevision
	s.revs[s.app.Revision] = model.AppSpec{}
}

// step runs one pass and applies it; dt moves the clock first.
func (s *sim) step(dt time.Duration) Decision {
	s.now = s.now.Add(dt)
	// Instances created last pass come up now (or crash).
	for i := range s.insts {
		in := &s.insts[i]
		if in.Desired == model.DesiredRun && in.Status.State == model.StateStarting {
			if s.crash[in.Revision] {
				in.Status.Failures++
				in.Status.Message = "exit code 1"
			} else {
				in.Status.State = model.StateRunning
			}
		}
	}
	d := Plan(Input{App: s.app, Instances: Refs(s.insts), Nodes: readyNodes, Rollout: s.ro, Request: s.req, Now: s.now, Stats: s.stats})
	if d.RequestDone {
		s.req = nil
	}
	s.events = append(s.events, d.Events...)
	for _, st := range d.Stop {
		for i := range s.insts {
			if s.insts[i].ID == st.ID {
				s.insts[i].Desired = model.DesiredStop
				s.insts[i].Status.State = model.StateStopped
			}
		}
	}
	for _, id := range d.Delete {
		for i := range s.insts {
			if s.insts[i].ID == id {
				s.insts = append(s.insts[:i], s.insts[i+1:]...)
				break
			}
		}
	}
	for i := 0; i < d.Create; i++ {
		s.add(s.app.Revision, false)
		s.creates++
	}
	for i := 0; i < d.CreateStable; i++ {
		s.add(d.StableRevision, false)
	}
	if d.Rollout != nil {
		ro := *d.Rollout
		s.ro = &ro
	}
	if d.Revert != nil {
		s.app.Revision = d.Revert.To
	}
	s.check()
	return d
}

// check asserts invariants every strategy keeps.
func (s *sim) check() {
	if s.ro == nil {
		return
	}
	if s.ro.Traffic != nil && s.ro.Traffic.Stable == 0 {
		s.t.Fatalf("traffic split without a stable revision: %+v", s.ro.Traffic)
	}
}

func (s *sim) active() (byRev map[int64]int) {
	byRev = map[int64]int{}
	for _, in := range s.insts {
		if in.Active() {
			byRev[in.Revision]++
		}
	}
	return byRev
}

func (s *sim) ready() int {
	k := 0
	for _, in := range s.insts {
		if in.Active() && in.Ready(false) {
			k++
		}
	}
	return k
}

func (s *sim) hasEvent(reason, contains string) bool {
	for _, e := range s.events {
		if e.Reason == reason && strings.Contains(e.Message, contains) {
			return true
		}
	}
	return false
}

// run steps at least once, until the rollout leaves progressing (or max
// passes).
func (s *sim) run(dt time.Duration, max int) {
	for i := 0; i < max; i++ {
		s.step(dt)
		if s.ro != nil && s.ro.State != model.RolloutProgressing {
			return
		}
	}
}

func TestRollingRespectsSurgeAndUnavailable(t *testing.T) {
	cases := []struct {
		name           string
		surge, unavail *model.IntOrPercent
		n              int
	}{
		{"default surge 1", nil, nil, 4},
		{"surge 2", ip(2, false), ip(0, false), 5},
		{"surge 0 unavailable 1", ip(0, false), ip(1, false), 3},
		{"percentages", ip(50, true), ip(25, true), 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, c.n, &model.RolloutSpec{MaxSurge: c.surge, MaxUnavailable: c.unavail})
			s.deploy()
			spec := s.app.Spec.EffectiveRollout()
			surge, unavail := SurgeAndUnavailable(spec, c.n)
			for i := 0; i < 50 && (s.ro == nil || s.ro.State == model.RolloutProgressing); i++ {
				s.step(time.Second)
				act := s.active()
				if total := act[1] + act[2]; total > c.n+surge {
					t.Fatalf("pass %d: %d active instances, more than %d+%d", i, total, c.n, surge)
				}
				if r := s.ready(); r < c.n-unavail {
					t.Fatalf("pass %d: %d ready, fewer than %d-%d", i, r, c.n, unavail)
				}
			}
			if s.ro.State != model.RolloutSucceeded || s.active()[2] != c.n || s.active()[1] != 0 {
				t.Fatalf("rollout %s, active %v", s.ro.State, s.active())
			}
			if s.creates != c.n {
				t.Fatalf("created %d instances, want %d", s.creates, c.n)
			}
			if !s.hasEvent("RolloutSucceeded", "revision 2") || !s.hasEvent("RolloutStarted", "from revision 1 to 2") {
				t.Fatalf("events: %+v", s.events)
			}
		})
	}
}

func TestRollingMinReadySeconds(t *testing.T) {
	s := newSim(t, 1, &model.RolloutSpec{MinReadySeconds: 10})
	s.deploy()
	s.step(0)                // create
	d := s.step(time.Second) // new running, but not for 10s
	if len(d.Stop) != 0 {
		t.Fatalf("stopped %v before minReadySeconds", d.Stop)
	}
	d = s.step(10 * time.Second)
	if len(d.Stop) != 1 || d.Stop[0].ID != "i01-r1" {
		t.Fatalf("after minReadySeconds: stops %v", d.Stop)
	}
}

func TestCrashLoopRollsBack(t *testing.T) {
	s := newSim(t, 2, nil)
	s.deploy()
	s.crash[2] = true
	s.run(time.Second, 20)
	if s.ro.State != model.RolloutRolledBack || s.app.Revision != 1 || s.ro.RevertTo != 1 {
		t.Fatalf("state %s, app revision %d", s.ro.State, s.app.Revision)
	}
	if !s.hasEvent("RolloutRolledBack", "crash loop") {
		t.Fatalf("no rollback event naming the crash loop: %+v", s.events)
	}
	s.step(time.Second)
	s.step(time.Second)
	if act := s.active(); act[1] != 2 || act[2] != 0 || s.ro.Traffic != nil {
		t.Fatalf("after rollback: active %v traffic %+v", act, s.ro.Traffic)
	}
}

func TestProgressDeadline(t *testing.T) {
	for _, auto := range []bool{true, false} {
		t.Run(fmt.Sprint("autoRollback=", auto), func(t *testing.T) {
			s := newSim(t, 1, &model.RolloutSpec{ProgressDeadline: model.D(time.Minute), AutoRollback: &auto})
			s.deploy()
			s.step(0)
			// The new instance never becomes ready: keep it starting.
			s.insts[len(s.insts)-1].Status.State = model.StatePending
			s.insts[len(s.insts)-1].Node = ""
			for i := 0; i < 10 && s.ro.State == model.RolloutProgressing; i++ {
				s.step(10 * time.Second)
				s.insts[len(s.insts)-1].Status.State = model.StatePending
			}
			want := model.RolloutFailed
			if auto {
				want = model.RolloutRolledBack
			}
			if s.ro.State != want || !strings.Contains(s.ro.Reason, "progress deadline 1m0s exceeded") {
				t.Fatalf("state %s reason %q", s.ro.State, s.ro.Reason)
			}
			if auto != (s.app.Revision == 1) {
				t.Fatalf("app revision %d", s.app.Revision)
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	s := newSim(t, 3, nil)
	s.deploy()
	s.step(0)
	s.req = &model.RolloutRequest{Action: model.ActionPause}
	s.step(time.Second)
	before := s.active()
	for i := 0; i < 5; i++ {
		if d := s.step(time.Hour); d.Create != 0 || len(d.Stop) != 0 {
			t.Fatalf("paused rollout acted: %+v", d)
		}
	}
	if s.ro.State != model.RolloutPaused || fmt.Sprint(before) != fmt.Sprint(s.active()) {
		t.Fatalf("state %s active %v", s.ro.State, s.active())
	}
	s.req = &model.RolloutRequest{Action: model.ActionResume}
	s.run(time.Second, 30)
	if s.ro.State != model.RolloutSucceeded {
		t.Fatalf("after resume: %s (%s)", s.ro.State, s.ro.Reason)
	}
}

func TestBlueGreen(t *testing.T) {
	s := newSim(t, 3, &model.RolloutSpec{Type: model.RolloutBlueGreen,
		BlueGreen: &model.BlueGreenSpec{PreviewSeconds: 5, ScaleDownDelay: model.D(30 * time.Second)}})
	s.deploy()
	d := s.step(0)
	if d.Create != 3 || s.ro.Traffic == nil || s.ro.Traffic.Stable != 1 {
		t.Fatalf("start: create %d traffic %+v", d.Create, s.ro.Traffic)
	}
	s.step(time.Second) // all new ready: preview starts
	if s.ro.Step != bgPreview || s.ro.Traffic.Stable != 1 {
		t.Fatalf("preview: step %d traffic %+v", s.ro.Step, s.ro.Traffic)
	}
	s.step(5 * time.Second)
	if s.ro.SwitchedAt == nil || s.ro.Traffic.Stable != 2 || s.active()[1] != 3 {
		t.Fatalf("switch: %+v active %v", s.ro, s.active())
	}
	s.step(10 * time.Second)
	if s.active()[1] != 3 {
		t.Fatal("old set stopped during the grace")
	}
	s.step(25 * time.Second)
	s.step(time.Second)
	if s.ro.State != model.RolloutSucceeded || s.active()[1] != 0 || s.ro.Traffic != nil {
		t.Fatalf("end: %s active %v traffic %+v", s.ro.State, s.active(), s.ro.Traffic)
	}
}

func TestBlueGreenUndoDuringGraceStartsNothing(t *testing.T) {
	s := newSim(t, 2, &model.RolloutSpec{Type: model.RolloutBlueGreen})
	s.deploy()
	s.step(0)
	s.step(time.Second)
	if s.ro.SwitchedAt == nil {
		t.Fatal("no switch")
	}
	s.req = &model.RolloutRequest{Action: model.ActionUndo, ToRevision: 1}
	s.step(time.Second)
	if s.app.Revision != 1 || s.ro.Traffic == nil || s.ro.Traffic.Stable != 1 {
		t.Fatalf("undo: revision %d traffic %+v", s.app.Revision, s.ro.Traffic)
	}
	created := s.creates
	d := s.step(time.Second)
	if s.creates != created || len(d.Stop) != 2 {
		t.Fatalf("switch back created %d, stopped %v", s.creates-created, d.Stop)
	}
}

func canarySpec(steps ...model.CanaryStep) *model.RolloutSpec {
	return &model.RolloutSpec{Type: model.RolloutCanary, Canary: &model.CanarySpec{Steps: steps,
		Match: []model.CanaryMatch{{Header: &model.MatchValue{Name: "X-Department", Equals: "qa"}}}}}
}

func weight(w int) model.CanaryStep { return model.CanaryStep{Weight: &w} }
func pause(d time.Duration) model.CanaryStep {
	return model.CanaryStep{Pause: &model.StepPause{Duration: model.D(d)}}
}

func TestCanarySteps(t *testing.T) {
	s := newSim(t, 4, canarySpec(weight(10), pause(30*time.Second), weight(50), pause(0)))
	s.deploy()
	d := s.step(0)
	if d.Create != 1 {
		t.Fatalf("canary at 10%% of 4 creates %d, want 1", d.Create)
	}
	tr := s.ro.Traffic
	if tr.Stable != 1 || tr.Canary != 2 || len(tr.Weights) != 1 || tr.Weights[0].Weight != 10 || len(tr.Rules) != 1 || tr.Rules[0].Header.Value != "qa" {
		t.Fatalf("traffic %+v", tr)
	}
	s.step(time.Second) // canary ready → step 2 (pause 30s)
	if s.ro.Step != 1 {
		t.Fatalf("step %d", s.ro.Step)
	}
	s.step(10 * time.Second)
	if s.ro.Step != 1 {
		t.Fatal("pause ended early")
	}
	s.step(25 * time.Second) // pause over → weight 50
	d = s.step(time.Second)
	if s.ro.Weight != 50 || d.Create != 1 {
		t.Fatalf("weight %d, create %d (want 2 canaries)", s.ro.Weight, d.Create)
	}
	s.step(time.Second)
	s.step(time.Second)
	if s.ro.State != model.RolloutPaused || !strings.Contains(s.ro.Reason, "promote") {
		t.Fatalf("indefinite pause: %s %q", s.ro.State, s.ro.Reason)
	}
	s.step(time.Hour)
	if s.ro.State != model.RolloutPaused || s.active()[1] != 4 {
		t.Fatal("indefinite pause moved on by itself")
	}
	s.req = &model.RolloutRequest{Action: model.ActionPromote}
	s.run(time.Second, 20)
	if s.ro.State != model.RolloutSucceeded || s.active()[2] != 4 || s.active()[1] != 0 || s.ro.Traffic != nil {
		t.Fatalf("after promote: %s active %v traffic %+v", s.ro.State, s.active(), s.ro.Traffic)
	}
}

func TestCanaryAbort(t *testing.T) {
	s := newSim(t, 2, canarySpec(weight(20), pause(0)))
	s.deploy()
	s.step(0)
	s.step(time.Second)
	s.step(time.Second)
	if s.ro.State != model.RolloutPaused {
		t.Fatalf("state %s", s.ro.State)
	}
	s.req = &model.RolloutRequest{Action: model.ActionAbort}
	s.step(time.Second)
	if s.ro.State != model.RolloutAborted || s.app.Revision != 1 || s.ro.Traffic.Stable != 1 {
		t.Fatalf("abort: %s revision %d traffic %+v", s.ro.State, s.app.Revision, s.ro.Traffic)
	}
	d := s.step(time.Second)
	if d.Create != 0 || len(d.Stop) != 1 || !strings.HasSuffix(d.Stop[0].ID, "-r2") {
		t.Fatalf("abort removes the canary only: %+v", d)
	}
	s.step(time.Second)
	if s.ro.Traffic != nil || s.active()[1] != 2 {
		t.Fatalf("after abort: traffic %+v active %v", s.ro.Traffic, s.active())
	}
}

func TestCanaryAnalysisPromotesByItself(t *testing.T) {
	spec := canarySpec(weight(25), pause(0), weight(50))
	spec.Canary.Analysis = &model.CanaryAnalysis{Window: model.D(20 * time.Second)}
	s := newSim(t, 4, spec)
	s.deploy()
	for i := 0; i < 40 && (s.ro == nil || s.ro.State != model.RolloutSucceeded); i++ {
		s.step(5 * time.Second)
	}
	if s.ro.State != model.RolloutSucceeded || s.active()[2] != 4 {
		t.Fatalf("state %s active %v", s.ro.State, s.active())
	}
}

func TestPromoteAndAbortNeedARunningRollout(t *testing.T) {
	s := newSim(t, 1, nil)
	for _, a := range []string{model.ActionPromote, model.ActionAbort} {
		s.req = &model.RolloutRequest{Action: a}
		d := s.step(time.Second)
		if !d.RequestDone || d.Revert != nil || d.Create != 0 || len(d.Stop) != 0 {
			t.Fatalf("%s without rollout: %+v", a, d)
		}
	}
}

func TestUndoAfterSuccessRollsBack(t *testing.T) {
	s := newSim(t, 2, nil)
	s.deploy()
	s.run(time.Second, 30)
	s.req = &model.RolloutRequest{Action: model.ActionUndo, ToRevision: 1}
	s.step(time.Second)
	if s.app.Revision != 1 || s.ro.State != model.RolloutRolledBack {
		t.Fatalf("undo: %d %s", s.app.Revision, s.ro.State)
	}
	for i := 0; i < 5; i++ {
		s.step(time.Second)
	}
	if act := s.active(); act[1] != 2 || act[2] != 0 {
		t.Fatalf("after undo: %v", act)
	}
}

func TestNewRevisionSupersedesRunningRollout(t *testing.T) {
	s := newSim(t, 2, canarySpec(weight(50), pause(0)))
	s.deploy()
	s.step(0)
	s.step(time.Second)
	s.deploy() // revision 3 while the canary of 2 waits
	s.step(time.Second)
	if s.ro.To != 3 || s.ro.From != 1 || s.ro.Traffic.Stable != 1 {
		t.Fatalf("superseding rollout %+v", s.ro)
	}
	if !s.hasEvent("RolloutSuperseded", "revision 3") {
		t.Fatalf("events %+v", s.events)
	}
	if act := s.active(); act[2] != 0 || act[1] != 2 || act[3] != 1 {
		t.Fatalf("superseded canary instances left: %v", act)
	}
}

func TestBlueGreenPromoteSkipsPreview(t *testing.T) {
	s := newSim(t, 2, &model.RolloutSpec{Type: model.RolloutBlueGreen, BlueGreen: &model.BlueGreenSpec{PreviewSeconds: 600}})
	s.deploy()
	s.req = &model.RolloutRequest{Action: model.ActionPromote}
	s.step(0) // promoted before the new set is ready
	if s.ro.SwitchedAt != nil || s.ro.Traffic.Stable != 1 {
		t.Fatal("switched before the new set was ready")
	}
	s.step(time.Second)
	if s.ro.SwitchedAt == nil || s.ro.Traffic.Stable != 2 {
		t.Fatalf("promote did not skip the preview: %+v", s.ro)
	}
}

func TestCanaryAnalysisThresholds(t *testing.T) {
	five := 5.0
	cases := []struct {
		name           string
		stable, canary model.RevisionStats
		want           string // rollout state after the window
		reason         string
	}{
		{"within thresholds", model.RevisionStats{Requests: 900, Errors: 9, P99: model.D(20 * time.Millisecond)},
			model.RevisionStats{Requests: 100, Errors: 2, P99: model.D(25 * time.Millisecond)}, model.RolloutSucceeded, ""},
		{"error rate", model.RevisionStats{Requests: 900},
			model.RevisionStats{Requests: 100, Errors: 12}, model.RolloutRolledBack, "12 of 100 requests with errors (12.0%)"},
		{"latency", model.RevisionStats{Requests: 900, P99: model.D(20 * time.Millisecond)},
			model.RevisionStats{Requests: 100, P99: model.D(80 * time.Millisecond)}, model.RolloutRolledBack, "4.0x stable's"},
		{"too few requests to judge", model.RevisionStats{Requests: 900},
			model.RevisionStats{Requests: 10, Errors: 10}, model.RolloutSucceeded, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := canarySpec(weight(10), pause(0))
			spec.Canary.Analysis = &model.CanaryAnalysis{Window: model.D(time.Minute), MaxErrorRate: &five, MaxLatencyP99Ratio: 2}
			s := newSim(t, 2, spec)
			s.stats = map[int64]model.RevisionStats{1: c.stable, 2: c.canary}
			s.deploy()
			for i := 0; i < 20 && (s.ro == nil || s.ro.Running()); i++ {
				s.step(20 * time.Second)
			}
			if s.ro.State != c.want || !strings.Contains(s.ro.Reason, c.reason) {
				t.Fatalf("state %s reason %q", s.ro.State, s.ro.Reason)
			}
			if c.want == model.RolloutRolledBack && s.app.Revision != 1 {
				t.Fatalf("app at revision %d", s.app.Revision)
			}
		})
	}
}

func TestCanaryKeepsTheStableSetWhole(t *testing.T) {
	s := newSim(t, 3, canarySpec(weight(10), pause(0)))
	s.deploy()
	s.step(0)
	s.step(time.Second)
	// A stable instance is lost (its node went down): stopped and gone.
	for i := range s.insts {
		if s.insts[i].Revision == 1 {
			s.insts[i].Desired, s.insts[i].Status.State = model.DesiredStop, model.StateLost
			break
		}
	}
	d := s.step(time.Second)
	if d.CreateStable != 1 || d.StableRevision != 1 || d.Create != 0 {
		t.Fatalf("decision %+v", d)
	}
	s.step(time.Second)
	if act := s.active(); act[1] != 3 || act[2] != 1 {
		t.Fatalf("active %v", act)
	}
}
