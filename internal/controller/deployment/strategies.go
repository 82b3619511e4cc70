package deployment

import (
	"fmt"
	"math"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// SurgeAndUnavailable resolves maxSurge (rounded up) and maxUnavailable
// (rounded down) against n; when both come out 0, surge is 1 so the
// rollout can move.
func SurgeAndUnavailable(spec model.RolloutSpec, n int) (surge, unavailable int) {
	surge = spec.MaxSurge.Resolve(n, true)
	unavailable = spec.MaxUnavailable.Resolve(n, false)
	if unavailable > n {
		unavailable = n
	}
	if surge == 0 && unavailable == 0 {
		surge = 1
	}
	return surge, unavailable
}

// rolling replaces old instances with new ones keeping at most n+surge
// instances and at least n-unavailable available. Old instances that are
// not ready go first (they serve nothing).
func (p *rolloutPlan) rolling() {
	ro := p.ro
	ro.Traffic = nil
	surge, unavail := SurgeAndUnavailable(p.spec, p.n)
	newAvail := p.countAvailable(p.cur)
	p.progressed(newAvail, p.n)
	p.trimCur(p.n)
	var readyOld, unreadyOld []*model.Instance
	for _, in := range p.old {
		if in.Ready(p.health) {
			readyOld = append(readyOld, in)
		} else {
			unreadyOld = append(unreadyOld, in)
		}
	}
	replaced := fmt.Sprintf("replaced by revision %d", p.app.Revision)
	p.stop(pickToStop(unreadyOld, len(unreadyOld), p.health), replaced)
	budget := newAvail + len(readyOld) - (p.n - unavail)
	stopping := pickToStop(readyOld, budget, p.health)
	p.stop(stopping, replaced)
	cur := min(len(p.cur), p.n)
	total := cur + len(p.old) - len(unreadyOld) - len(stopping)
	if c := min(p.n-cur, p.n+surge-total); c > 0 {
		p.d.Create = c
	}
	if len(p.old) == 0 && newAvail >= p.n && len(p.cur) <= p.n {
		p.succeed()
		return
	}
	ro.Message = p.waitingFor()
	if ro.Message == "" {
		ro.Message = fmt.Sprintf("%d/%d new available, %d old left", newAvail, p.n, len(p.old)-len(stopping)-len(unreadyOld))
	}
	p.d.Waiting = p.waitingFor()
}

// Blue/green steps (Rollout.Step).
const (
	bgStarting = 0 // the new set starts beside the old
	bgPreview  = 1 // every new instance ready; waiting previewSeconds
	bgSwitched = 2 // traffic on the new set; old kept for scaleDownDelay
)

// blueGreen starts the whole new set beside the old, switches all traffic
// at once when every new instance is available (after previewSeconds),
// and stops the old set scaleDownDelay later.
func (p *rolloutPlan) blueGreen() {
	ro := p.ro
	newAvail := p.countAvailable(p.cur)
	if len(p.cur) < p.n {
		p.d.Create = p.n - len(p.cur)
	}
	p.trimCur(p.n)
	if ro.SwitchedAt == nil {
		p.keepStable()
		p.progressed(newAvail, p.n)
		ro.Traffic = &model.Traffic{Stable: ro.From}
		// promote skips the preview: step bgPreview with no start time.
		promoted := ro.Step == bgPreview && ro.StepStartedAt.IsZero()
		if newAvail < p.n {
			if !promoted {
				ro.Step, ro.StepStartedAt = bgStarting, p.now
			}
			ro.Message = fmt.Sprintf("starting the new set: %d/%d available; revision %d keeps all traffic", newAvail, p.n, ro.From)
			p.d.Waiting = ro.Message
			return
		}
		if ro.Step == bgStarting {
			ro.Step, ro.StepStartedAt = bgPreview, p.now
		}
		preview := time.Duration(p.spec.BlueGreen.PreviewSeconds) * time.Second
		if left := preview - p.now.Sub(ro.StepStartedAt); left > 0 {
			ro.Message = fmt.Sprintf("new set ready; switching traffic at %s", at(p.now.Add(left)))
			return
		}
		now := p.now
		ro.SwitchedAt, ro.Step, ro.StepStartedAt = &now, bgSwitched, now
		ro.Traffic = &model.Traffic{Stable: ro.To}
		p.event(false, "TrafficSwitched", "all traffic switched from revision %d to %d; old set kept %s for `berth rollout undo`",
			ro.From, ro.To, p.spec.BlueGreen.ScaleDownDelay.Duration)
	}
	ro.ProgressAt = p.now
	ro.Traffic = &model.Traffic{Stable: ro.To}
	delay := p.spec.BlueGreen.ScaleDownDelay.Duration
	if left := delay - p.now.Sub(*ro.SwitchedAt); left > 0 && len(p.old) > 0 {
		ro.Message = fmt.Sprintf("traffic on revision %d; old set stops at %s (undo switches back at once)", ro.To, at(p.now.Add(left)))
		return
	}
	if len(p.old) > 0 {
		p.stop(p.old, fmt.Sprintf("blue/green: replaced by revision %d after %s", ro.To, delay))
		p.event(false, "OldSetScaledDown", "old set of %d instances stopped", len(p.old))
		ro.Message = "stopping the old set"
		return
	}
	p.succeed()
}

func isIndefinitePause(s model.CanaryStep) bool {
	return s.Pause != nil && s.Pause.Duration.Duration == 0
}

func pauseReason(step int) string {
	return fmt.Sprintf("paused at step %d: waiting for `berth rollout promote`", step+1)
}

// canaryWeight is the weight in force at step i: that of the last weight
// step at or before it (0 before any), 100 once every step is done.
func canaryWeight(steps []model.CanaryStep, i int) int {
	if i >= len(steps) {
		return 100
	}
	w := 0
	for _, s := range steps[:i+1] {
		if s.Weight != nil {
			w = *s.Weight
		}
	}
	return w
}

// CanaryInstances is how many canary instances serve weight percent of
// n: the share rounded up, at least 1, at most n.
func CanaryInstances(n, weight int) int {
	c := int(math.Ceil(float64(n) * float64(weight) / 100))
	return max(1, min(c, n))
}

// canary walks the steps: weights move a share of traffic (and the
// match rules' requests) to the canary, pauses wait a duration or for
// promote; after the last step the new set is completed, traffic moves to
// it and the old set stops.
func (p *rolloutPlan) canary() {
	ro := p.ro
	c := p.spec.Canary
	steps := c.Steps
	ro.StepCount = len(steps)
	newAvail := p.countAvailable(p.cur)
	if ro.Step >= len(steps) {
		p.promoteFull(newAvail)
		return
	}
	p.keepStable()
	w := canaryWeight(steps, ro.Step)
	ro.Weight = w
	want := CanaryInstances(p.n, w)
	if len(p.cur) < want {
		p.d.Create = want - len(p.cur)
	}
	p.trimCur(want)
	p.progressed(newAvail, want)
	t := &model.Traffic{Stable: ro.From, Canary: ro.To, Rules: c.CanaryRules()}
	if w > 0 {
		t.Weights = []model.TrafficWeight{{Target: model.RefCanary, Weight: w}}
	}
	ro.Traffic = t
	if newAvail < want {
		ro.Message = fmt.Sprintf("step %d/%d: waiting for the canary: %d/%d available", ro.Step+1, len(steps), newAvail, want)
		p.d.Waiting = ro.Message
		return
	}
	st := steps[ro.Step]
	var window time.Duration
	if c.Analysis != nil {
		window = c.Analysis.Window.Duration
		if cause := p.analyze(c.Analysis); cause != "" {
			p.fail(cause)
			return
		}
	}
	elapsed := p.now.Sub(ro.StepStartedAt)
	switch {
	case st.Weight != nil && elapsed < window:
		ro.Message = fmt.Sprintf("step %d/%d: weight %d%%, canary healthy; analysis window ends at %s", ro.Step+1, len(steps), w, at(ro.StepStartedAt.Add(window)))
		return
	case st.Pause != nil && st.Pause.Duration.Duration > 0 && elapsed < st.Pause.Duration.Duration:
		ro.Message = fmt.Sprintf("step %d/%d: pause until %s (weight %d%%)", ro.Step+1, len(steps), at(ro.StepStartedAt.Add(st.Pause.Duration.Duration)), w)
		return
	case isIndefinitePause(st) && (window == 0 || elapsed < window):
		if ro.State != model.RolloutPaused {
			p.event(false, "RolloutPaused", "canary of revision %d at weight %d%%: %s", ro.To, w, pauseReason(ro.Step))
		}
		ro.State, ro.Reason = model.RolloutPaused, pauseReason(ro.Step)
		ro.Message = fmt.Sprintf("step %d/%d: weight %d%%; `berth rollout promote` goes on, `abort` goes back", ro.Step+1, len(steps), w)
		return
	}
	ro.State, ro.Reason = model.RolloutProgressing, ""
	ro.Step++
	ro.StepStartedAt = p.now
	if ro.Step < len(steps) {
		ro.Weight = canaryWeight(steps, ro.Step)
		p.event(false, "CanaryStep", "canary of revision %d: step %d/%d, weight %d%%", ro.To, ro.Step+1, len(steps), ro.Weight)
	} else {
		p.event(false, "CanaryPromoted", "canary of revision %d passed every step; completing the new set", ro.To)
	}
}

// promoteFull completes the new set, moves all traffic to it and stops
// the old set.
func (p *rolloutPlan) promoteFull(newAvail int) {
	ro := p.ro
	if len(p.cur) < p.n {
		p.d.Create = p.n - len(p.cur)
	}
	p.trimCur(p.n)
	p.progressed(newAvail, p.n)
	if newAvail < p.n {
		ro.Message = fmt.Sprintf("promoting: %d/%d new available", newAvail, p.n)
		p.d.Waiting = ro.Message
		return
	}
	ro.Weight = 100
	ro.Traffic = &model.Traffic{Stable: ro.To}
	if len(p.old) > 0 {
		p.stop(p.old, fmt.Sprintf("canary: replaced by revision %d", ro.To))
		ro.Message = "all traffic on the new set; stopping the old"
		return
	}
	p.succeed()
}

// at formats a time for rollout messages. Messages name instants rather
// than countdowns so the stored rollout changes only when something
// happens.
func at(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }

// analyze compares the canary's figures with the thresholds (and with
// stable's p99); "" when they hold or there are too few requests to
// judge.
func (p *rolloutPlan) analyze(a *model.CanaryAnalysis) string {
	if p.in.Stats == nil {
		return ""
	}
	ro := p.ro
	minReq := int64(a.MinRequests)
	if minReq == 0 {
		minReq = model.DefaultMinRequests
	}
	canary, stable := p.in.Stats[ro.To], p.in.Stats[ro.From]
	if canary.Requests < minReq {
		return ""
	}
	w := a.Window.Duration
	if a.MaxErrorRate != nil && canary.ErrorRate() > *a.MaxErrorRate {
		return fmt.Sprintf("canary analysis: revision %d answered %d of %d requests with errors (%.1f%%) over %s, above maxErrorRate %g%% (stable: %.1f%% of %d)",
			ro.To, canary.Errors, canary.Requests, canary.ErrorRate(), w, *a.MaxErrorRate, stable.ErrorRate(), stable.Requests)
	}
	if r := a.MaxLatencyP99Ratio; r > 0 && stable.Requests >= minReq && stable.P99.Duration > 0 {
		if ratio := float64(canary.P99.Duration) / float64(stable.P99.Duration); ratio > r {
			return fmt.Sprintf("canary analysis: revision %d p99 latency %s is %.1fx stable's %s over %s, above maxLatencyP99Ratio %g",
				ro.To, canary.P99.Duration, ratio, stable.P99.Duration, w, r)
		}
	}
	return ""
}

// keepStable replaces lost instances of the stable revision while it
// still takes traffic, so a long canary or a blue/green preview does not
// wear the stable set down, and stops instances of a superseded
// revision (neither stable nor the one rolling out: they get no traffic).
func (p *rolloutPlan) keepStable() {
	from := p.ro.From
	if from <= 0 || from == p.app.Revision {
		return
	}
	have := 0
	var others []*model.Instance
	for _, in := range p.old {
		if in.Revision == from {
			have++
		} else {
			others = append(others, in)
		}
	}
	p.stop(others, fmt.Sprintf("superseded: revision %d rolls out from stable revision %d", p.app.Revision, from))
	if have < p.n {
		p.d.CreateStable, p.d.StableRevision = p.n-have, from
	}
}
