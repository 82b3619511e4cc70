package model

import "time"

// Rollout states.
const (
	RolloutProgressing = "progressing"
	RolloutPaused      = "paused"
	RolloutSucceeded   = "succeeded"
	// RolloutFailed is a rollout that cannot go on (deadline, crash loop)
	// and was not rolled back (autoRollback: false).
	RolloutFailed     = "failed"
	RolloutAborted    = "aborted"
	RolloutRolledBack = "rolledBack"
)

// Store keys of rollout objects.
const (
	// PrefixRollouts holds one Rollout per app, written by the deployment
	// controller only.
	PrefixRollouts = "/rollouts/"
	// PrefixRolloutRequests holds at most one pending RolloutRequest per
	// app, written by the API and consumed by the deployment controller.
	PrefixRolloutRequests = "/rolloutrequests/"
)

// RolloutKey is where the rollout of app ns/name lives.
func RolloutKey(ns, name string) string { return PrefixRollouts + ns + "/" + name }

// RolloutRequestKey is where a pending request for app ns/name lives.
func RolloutRequestKey(ns, name string) string { return PrefixRolloutRequests + ns + "/" + name }

// Rollout is the progress of an app's latest move between revisions. The
// deployment controller owns it; the router reads Traffic.
type Rollout struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// Strategy is rolling, blueGreen or canary.
	Strategy string `json:"strategy"`
	// From is the stable revision the rollout started from (0: none).
	From int64 `json:"from"`
	// To is the revision being rolled out.
	To int64 `json:"to"`
	// RevertTo is the revision a rollback or abort returned the app to.
	RevertTo int64 `json:"revertTo,omitempty"`
	// Step is the index of the current canary step; StepCount is how many
	// there are.
	Step      int `json:"step"`
	StepCount int `json:"stepCount,omitempty"`
	// Weight is the canary's current share of traffic in percent.
	Weight int    `json:"weight,omitempty"`
	State  string `json:"state"`
	// Reason says why the rollout paused, failed or was rolled back.
	Reason string `json:"reason,omitempty"`
	// Message says what the rollout is waiting for.
	Message string `json:"message,omitempty"`
	// Paused is set by `berth rollout pause` and cleared by resume.
	Paused bool `json:"paused,omitempty"`
	// Traffic is the split the router applies to every route of the app
	// instead of the spec's traffic section; nil leaves the spec's.
	Traffic *Traffic `json:"traffic,omitempty"`
	// Counts are the instance counts at the last pass.
	Counts RolloutCounts `json:"counts"`
	// SwitchedAt is when a blue/green rollout moved traffic to To.
	SwitchedAt *time.Time `json:"switchedAt,omitempty"`
	// StepStartedAt is when the current step (or the wait for full
	// readiness) began.
	StepStartedAt time.Time `json:"stepStartedAt"`
	// ProgressAt is when a new instance last became available.
	ProgressAt time.Time `json:"progressAt"`
	StartedAt  time.Time `json:"startedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// FinishedAt is set once the rollout reached a final state.
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// RolloutCounts are instance counts of a rollout.
type RolloutCounts struct {
	Desired int `json:"desired"`
	// Old counts active instances of other revisions; New those of To.
	Old int `json:"old"`
	New int `json:"new"`
	// NewReady counts new instances available (ready for minReadySeconds).
	NewReady int `json:"newReady"`
	OldReady int `json:"oldReady"`
}

// Done reports whether the rollout reached a final state.
func (r *Rollout) Done() bool {
	switch r.State {
	case RolloutSucceeded, RolloutFailed, RolloutAborted, RolloutRolledBack:
		return true
	}
	return false
}

// Running reports whether the rollout is progressing or paused.
func (r *Rollout) Running() bool {
	return r.State == RolloutProgressing || r.State == RolloutPaused
}

// Rollout request actions.
const (
	ActionPause   = "pause"
	ActionResume  = "resume"
	ActionPromote = "promote"
	ActionAbort   = "abort"
	ActionUndo    = "undo"
)

// RolloutRequest is a user's intent about an app's rollout, recorded by
// the API and carried out by the deployment controller.
type RolloutRequest struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Action    string `json:"action"`
	// ToRevision is the target of undo (resolved by the API).
	ToRevision int64 `json:"toRevision,omitempty"`
	// Full makes promote skip every remaining step.
	Full bool      `json:"full,omitempty"`
	At   time.Time `json:"at"`
}

// RolloutView is a rollout with the app's revisions, for `berth rollout
// status` and `history`.
type RolloutView struct {
	// Rollout is nil when the app has never rolled out.
	Rollout *Rollout `json:"rollout,omitempty"`
	// Revision is the app's current revision.
	Revision int64 `json:"revision"`
	// Pending is a request the controller has not carried out yet.
	Pending *RolloutRequest `json:"pending,omitempty"`
}

// WithTemplate returns the spec of revision tmpl applied to the app of s:
// the template fields come from tmpl; instances, routes, rollout settings
// and allowFrom (not part of the template) stay as in s.
func (s AppSpec) WithTemplate(tmpl AppSpec) AppSpec {
	out := tmpl
	out.Instances = s.Instances
	out.Routes = s.Routes
	out.Rollout = s.Rollout
	out.AllowFrom = s.AllowFrom
	return out
}

// RevisionStats are the requests one revision served through the router
// over an analysis window.
type RevisionStats struct {
	Requests int64 `json:"requests"`
	// Errors are 5xx answers and proxy errors.
	Errors int64 `json:"errors"`
	// P99 is the 99th percentile latency (a bucket's upper bound).
	P99 Duration `json:"p99"`
}

// ErrorRate is Errors per Requests in percent (0 without requests).
func (s RevisionStats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return 100 * float64(s.Errors) / float64(s.Requests)
}
