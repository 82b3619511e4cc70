package deployment

import (
	"fmt"

	"github.com/berth-dev/berth/internal/model"
)

// decideBatch runs a batch app to completion: keep up to Parallelism
// instances running until Completions have succeeded; failures (an
// instance that failed for good, an in-place restart after a failed exit
// under restart policy on-failure, a failed start the agent retries; see
// Instance.FailedAttempts) count against BackoffLimit, and exceeding it
// fails the job. Ended instances are recorded with their
// outcome (Finish) and stopped, never restarted. A new revision runs the
// job again from zero: instances of older revisions are stopped at once.
func decideBatch(d Decision, app *model.App, cur, old, records []*model.Instance) Decision {
	for _, in := range old {
		d.Stop = append(d.Stop, Stop{ID: in.ID, Reason: fmt.Sprintf("replaced by revision %d", app.Revision)})
	}
	completions, limit := app.Spec.BatchCompletions(), app.Spec.BatchBackoffLimit()
	succeeded, failed := 0, 0
	for _, in := range records {
		failed += in.FailedAttempts()
		if in.Outcome == model.OutcomeSucceeded {
			succeeded++
		}
	}
	wasDone := succeeded >= completions || failed > limit
	var running []*model.Instance
	for _, in := range cur {
		failed += in.FailedAttempts()
		switch {
		case in.Succeeded():
			succeeded++
			d.Finish = append(d.Finish, Finish{ID: in.ID, Outcome: model.OutcomeSucceeded, Reason: "exited 0"})
		case in.FailedFinally():
			d.Finish = append(d.Finish, Finish{ID: in.ID, Outcome: model.OutcomeFailed, Reason: failReason(in)})
		default:
			running = append(running, in)
		}
	}
	// Instances still running when the job ends are recorded as stopped,
	// so their restarts keep counting.
	stopAll := func(reason string) {
		for _, in := range running {
			d.Finish = append(d.Finish, Finish{ID: in.ID, Outcome: model.OutcomeStopped, Reason: reason})
		}
	}
	switch {
	case succeeded >= completions:
		stopAll("job complete")
		if !wasDone {
			d.Job = &JobEvent{Reason: "JobComplete", Message: fmt.Sprintf("job complete: %d/%d succeeded, %d failed", succeeded, completions, failed)}
		}
	case failed > limit:
		msg := fmt.Sprintf("job failed: %d failures exceed backoffLimit %d (%d/%d succeeded)", failed, limit, succeeded, completions)
		stopAll(msg)
		if !wasDone {
			d.Job = &JobEvent{Reason: "JobFailed", Message: msg}
		}
	default:
		want := min(app.Spec.BatchParallelism(), completions-succeeded)
		if len(running) < want {
			d.Create = want - len(running)
		}
		for _, in := range pickToStop(running, len(running)-want, app.Spec.Health != nil) {
			d.Stop = append(d.Stop, Stop{ID: in.ID, Reason: fmt.Sprintf("parallelism %d", want)})
		}
	}
	return d
}

func failReason(in *model.Instance) string {
	if in.Status.Message != "" {
		return in.Status.Message
	}
	return fmt.Sprintf("exited with code %d", in.Status.ExitCode)
}
