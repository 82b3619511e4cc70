package deployment

import (
	"fmt"
	"sort"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// Input is the snapshot the pure core decides from.
type Input struct {
	App *model.App
	// Instances are read only: the controller passes the state view's
	// shared objects.
	Instances []*model.Instance
	Nodes     map[string]*model.Node
	// Rollout is the stored rollout of the app; nil when it never rolled
	// out.
	Rollout *model.Rollout
	// Request is the pending user request (pause, resume, promote,
	// abort, undo); nil when none.
	Request *model.RolloutRequest
	// Now is the controller's clock reading for this pass.
	Now time.Time
	// Stats are the router's figures of the rollout's stable and canary
	// revisions over the canary analysis window; nil when there is no
	// router to ask (the analysis is then health only).
	Stats map[int64]model.RevisionStats
}

// Revert asks the controller to return the app to revision To (template
// of that revision, same instances, routes and rollout settings), in one
// transaction with the rollout state of the same decision.
type Revert struct {
	To     int64
	Reason string
}

// RolloutEvent is one step of a rollout worth an event.
type RolloutEvent struct {
	Warning bool
	Reason  string
	Message string
}

// rolloutPlan carries the service planner's state through one pass.
type rolloutPlan struct {
	d        Decision
	in       Input
	app      *model.App
	ro       *model.Rollout
	spec     model.RolloutSpec
	cur, old []*model.Instance
	n        int
	health   bool
	now      time.Time
}

func (p *rolloutPlan) event(warning bool, reason, format string, args ...any) {
	p.d.Events = append(p.d.Events, RolloutEvent{Warning: warning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// available reports whether a new instance counts as available: ready
// and, with minReadySeconds, running for that long.
func (p *rolloutPlan) available(in *model.Instance) bool {
	if !in.Ready(p.health) {
		return false
	}
	min := time.Duration(p.spec.MinReadySeconds) * time.Second
	if min == 0 {
		return true
	}
	return in.Status.StartedAt != nil && p.now.Sub(*in.Status.StartedAt) >= min
}

func (p *rolloutPlan) countAvailable(insts []*model.Instance) int {
	k := 0
	for _, in := range insts {
		if p.available(in) {
			k++
		}
	}
	return k
}

func (p *rolloutPlan) countReady(insts []*model.Instance) int {
	k := 0
	for _, in := range insts {
		if in.Ready(p.health) {
			k++
		}
	}
	return k
}

// stop appends stops for insts with one reason.
func (p *rolloutPlan) stop(insts []*model.Instance, reason string) {
	for _, in := range insts {
		p.d.Stop = append(p.d.Stop, Stop{ID: in.ID, Reason: reason})
	}
}

// trimCur stops new instances above want.
func (p *rolloutPlan) trimCur(want int) {
	p.stop(pickToStop(p.cur, len(p.cur)-want, p.health), fmt.Sprintf("scaled down to %d", want))
}

// waitingFor names the first new instance that is not available yet.
func (p *rolloutPlan) waitingFor() string {
	for _, in := range p.cur {
		if !p.available(in) {
			return fmt.Sprintf("waiting for %s (revision %d) to become ready", in.ID, p.app.Revision)
		}
	}
	return ""
}

// planService decides a service's pass: plain convergence when nothing
// rolls out, else one step of the app's rollout strategy.
func planService(d Decision, in Input, cur, old []*model.Instance) Decision {
	app := in.App
	p := &rolloutPlan{d: d, in: in, app: app, spec: app.Spec.EffectiveRollout(), cur: cur, old: old,
		n: app.DesiredInstances(), health: app.Spec.Health != nil, now: in.Now}
	if in.Rollout != nil {
		ro := *in.Rollout
		p.ro = &ro
	}
	switch ro := p.ro; {
	case ro != nil && ro.To == app.Revision && ro.RevertTo == 0:
		// The rollout of the current revision, in whatever state.
	case ro != nil && (ro.State == model.RolloutRolledBack || ro.State == model.RolloutAborted) && ro.RevertTo == app.Revision:
		if p.request() {
			return p.d
		}
		p.revert()
		return p.d
	case len(old) > 0:
		p.begin()
	default:
		if p.request() {
			return p.d
		}
		p.converge()
		return p.d
	}
	if p.request() {
		return p.d
	}
	ro := p.ro
	if !ro.Running() {
		p.hold()
		return p.d
	}
	if p.checkFailure() {
		return p.d
	}
	if ro.Paused {
		ro.State, ro.Message = model.RolloutPaused, "paused by `berth rollout pause`; `berth rollout resume` goes on"
		p.hold()
		return p.d
	}
	switch ro.Strategy {
	case model.RolloutBlueGreen:
		p.blueGreen()
	case model.RolloutCanary:
		p.canary()
	default:
		p.rolling()
	}
	p.counts()
	return p.d
}

// converge keeps DesiredInstances of the current revision with no rollout.
func (p *rolloutPlan) converge() {
	if len(p.cur) < p.n {
		p.d.Create = p.n - len(p.cur)
	}
	p.trimCur(p.n)
}

// hold keeps what runs (a finished or paused rollout): only scaling.
func (p *rolloutPlan) hold() {
	if len(p.old) == 0 {
		p.converge()
	} else {
		p.trimCur(p.n)
	}
	p.counts()
	p.d.Rollout = p.ro
}

// counts records instance counts in the rollout.
func (p *rolloutPlan) counts() {
	p.ro.Counts = model.RolloutCounts{Desired: p.n, Old: len(p.old), New: len(p.cur),
		NewReady: p.countAvailable(p.cur), OldReady: p.countReady(p.old)}
	p.d.Rollout = p.ro
}

// stableRevision is the revision serving before a new rollout starts.
func (p *rolloutPlan) stableRevision() int64 {
	if ro := p.ro; ro != nil {
		switch {
		case ro.Running() || ro.State == model.RolloutFailed:
			if ro.From != 0 {
				return ro.From
			}
		case ro.RevertTo != 0:
			return ro.RevertTo
		case ro.State == model.RolloutSucceeded:
			return ro.To
		}
	}
	byRev := map[int64]int{}
	for _, in := range p.old {
		byRev[in.Revision] += 1
		if in.Ready(p.health) {
			byRev[in.Revision] += 1000
		}
	}
	var best int64
	for r, k := range byRev {
		if best == 0 || k > byRev[best] || k == byRev[best] && r > best {
			best = r
		}
	}
	return best
}

// begin starts a rollout of the current revision.
func (p *rolloutPlan) begin() {
	from := p.stableRevision()
	if p.ro != nil && p.ro.Running() {
		p.event(false, "RolloutSuperseded", "rollout of revision %d superseded by revision %d", p.ro.To, p.app.Revision)
	}
	ro := &model.Rollout{Namespace: p.app.Namespace, App: p.app.Name, Strategy: p.spec.Type,
		From: from, To: p.app.Revision, State: model.RolloutProgressing,
		StartedAt: p.now, StepStartedAt: p.now, ProgressAt: p.now}
	switch ro.Strategy {
	case model.RolloutCanary:
		ro.StepCount = len(p.spec.Canary.Steps)
	case model.RolloutBlueGreen:
		ro.StepCount = 3
	}
	p.ro = ro
	p.event(false, "RolloutStarted", "%s rollout from revision %d to %d started", ro.Strategy, from, ro.To)
}

// request carries out the pending request; true ends the pass.
func (p *rolloutPlan) request() bool {
	r := p.in.Request
	if r == nil {
		return false
	}
	p.d.RequestDone = true
	ro := p.ro
	running := ro != nil && ro.Running()
	switch r.Action {
	case model.ActionPause:
		if running && !ro.Paused {
			ro.Paused, ro.State = true, model.RolloutPaused
			ro.Reason = "paused by user"
			p.event(false, "RolloutPaused", "rollout to revision %d paused by user", ro.To)
		}
	case model.ActionResume:
		if running && (ro.Paused || ro.State == model.RolloutPaused) {
			ro.Paused, ro.State, ro.Reason, ro.ProgressAt = false, model.RolloutProgressing, "", p.now
			if ro.Strategy == model.RolloutCanary && ro.Step < len(p.spec.Canary.Steps) && isIndefinitePause(p.spec.Canary.Steps[ro.Step]) {
				ro.State, ro.Reason = model.RolloutPaused, pauseReason(ro.Step)
			}
			p.event(false, "RolloutResumed", "rollout to revision %d resumed", ro.To)
		}
	case model.ActionPromote:
		if !running {
			return false
		}
		ro.Paused, ro.State, ro.Reason, ro.ProgressAt = false, model.RolloutProgressing, "", p.now
		switch ro.Strategy {
		case model.RolloutCanary:
			if r.Full || ro.Step >= len(p.spec.Canary.Steps) || p.spec.Canary.Steps[ro.Step].Pause == nil {
				ro.Step = len(p.spec.Canary.Steps)
			} else {
				ro.Step++
			}
			ro.StepStartedAt = p.now
			p.event(false, "RolloutPromoted", "canary of revision %d promoted by user to step %d/%d", ro.To, ro.Step, ro.StepCount)
		case model.RolloutBlueGreen:
			if ro.SwitchedAt == nil {
				ro.Step = 1
				ro.StepStartedAt = time.Time{} // no preview wait
			}
			p.event(false, "RolloutPromoted", "blue/green rollout of revision %d promoted by user", ro.To)
		default:
			p.event(false, "RolloutPromoted", "rolling update to revision %d resumed by promote", ro.To)
		}
	case model.ActionAbort:
		if !running {
			return false
		}
		p.startRevert(model.RolloutAborted, ro.From, fmt.Sprintf("aborted by user; traffic back to revision %d", ro.From))
		return true
	case model.ActionUndo:
		to := r.ToRevision
		if to <= 0 || to == p.app.Revision {
			p.event(true, "UndoRefused", "undo to revision %d: the app already runs it", to)
			return false
		}
		if ro == nil {
			p.ro = &model.Rollout{Namespace: p.app.Namespace, App: p.app.Name, Strategy: p.spec.Type,
				From: p.app.Revision, To: p.app.Revision, StartedAt: p.now}
		}
		p.startRevert(model.RolloutRolledBack, to, fmt.Sprintf("undo requested by user: back to revision %d", to))
		return true
	}
	return false
}

// startRevert ends the rollout in state and returns the app to revision
// to; traffic goes to it at once where it has ready instances.
func (p *rolloutPlan) startRevert(state string, to int64, reason string) {
	ro := p.ro
	now := p.now
	ro.State, ro.Reason, ro.RevertTo, ro.Paused, ro.Message = state, reason, to, false, ""
	ro.FinishedAt = &now
	ro.Traffic = &model.Traffic{Stable: to}
	p.d.Rollout = ro
	p.d.Revert = &Revert{To: to, Reason: reason}
	p.event(true, "Rollout"+upperFirst(state), "%s", reason)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// revert converges back to RevertTo after an abort, undo or rollback:
// every missing instance starts at once; the others stop once the
// reverted set is ready (at once when it already is, e.g. a blue/green
// switch back during the grace), unready ones at once.
func (p *rolloutPlan) revert() {
	ro := p.ro
	if len(p.cur) < p.n {
		p.d.Create = p.n - len(p.cur)
	}
	p.trimCur(p.n)
	ready := p.countReady(p.cur)
	reason := fmt.Sprintf("rolled back to revision %d", ro.RevertTo)
	var unready []*model.Instance
	for _, in := range p.old {
		if ready >= p.n || !in.Ready(p.health) {
			unready = append(unready, in)
		}
	}
	p.stop(unready, reason)
	if ready >= p.n && len(p.old) == 0 {
		if ro.Traffic != nil {
			p.event(false, "RolloutReverted", "revision %d serves all traffic again", ro.RevertTo)
		}
		ro.Traffic, ro.Message = nil, ""
	} else {
		ro.Traffic = &model.Traffic{Stable: ro.RevertTo}
		ro.Message = fmt.Sprintf("reverting to revision %d: %d/%d ready, %d other instances left", ro.RevertTo, ready, p.n, len(p.old))
	}
	p.counts()
}

// checkFailure fails the rollout on a crash-looping new instance or a
// passed progress deadline, rolling back when autoRollback is on.
func (p *rolloutPlan) checkFailure() bool {
	ro := p.ro
	cause := ""
	for _, in := range p.cur {
		if in.Status.Failures >= model.FailingThreshold {
			msg := in.Status.Message
			if msg == "" {
				msg = fmt.Sprintf("exit code %d", in.Status.ExitCode)
			}
			cause = fmt.Sprintf("instance %s of revision %d failed %d times in a row (crash loop): %s", in.ID, in.Revision, in.Status.Failures, msg)
			break
		}
	}
	if cause == "" && !ro.Paused && ro.State == model.RolloutProgressing && !ro.ProgressAt.IsZero() {
		if dl := p.spec.ProgressDeadline.Duration; p.now.Sub(ro.ProgressAt) > dl {
			w := p.waitingFor()
			if w == "" {
				w = ro.Message
			}
			cause = fmt.Sprintf("progress deadline %s exceeded: %s", dl, w)
		}
	}
	if cause == "" {
		return false
	}
	p.fail(cause)
	return true
}

// fail ends the rollout for cause: rolled back with autoRollback, else
// failed and held.
func (p *rolloutPlan) fail(cause string) {
	ro := p.ro
	if *p.spec.AutoRollback && ro.From > 0 {
		p.startRevert(model.RolloutRolledBack, ro.From, fmt.Sprintf("rolled back to revision %d: %s", ro.From, cause))
		return
	}
	now := p.now
	ro.State, ro.Reason, ro.FinishedAt = model.RolloutFailed, cause, &now
	p.event(true, "RolloutFailed", "rollout to revision %d failed: %s", ro.To, cause)
	p.hold()
}

// succeed finishes the rollout.
func (p *rolloutPlan) succeed() {
	ro := p.ro
	now := p.now
	ro.State, ro.Traffic, ro.Message, ro.Reason, ro.FinishedAt = model.RolloutSucceeded, nil, "", "", &now
	p.event(false, "RolloutSucceeded", "revision %d rolled out (%s)", ro.To, ro.Strategy)
}

// progressed moves the progress clock when more new instances are
// available than at the last pass, or when nothing is awaited.
func (p *rolloutPlan) progressed(avail, want int) {
	if avail > p.ro.Counts.NewReady || avail >= want {
		p.ro.ProgressAt = p.now
	}
}

// sortedByAge is insts oldest first (stable for tests).
func sortedByAge(insts []*model.Instance) []*model.Instance {
	s := append([]*model.Instance(nil), insts...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].CreatedAt.Before(s[j].CreatedAt) })
	return s
}
