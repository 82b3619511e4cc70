package model

import "fmt"

// App types (AppSpec.Type).
const (
	// TypeService keeps Instances running (the default; stored as "").
	TypeService = "service"
	// TypeSystem runs exactly one instance on every ready node that
	// matches the app's constraints; the count follows the nodes.
	TypeSystem = "system"
	// TypeBatch runs instances to completion: Completions must succeed,
	// Parallelism run at once, BackoffLimit failures fail the job.
	TypeBatch = "batch"
)

// Batch defaults.
const (
	DefaultCompletions  = 1
	DefaultParallelism  = 1
	DefaultBackoffLimit = 6
	maxBackoffLimit     = 1000
)

// IsSystem reports whether the spec is of type system.
func (s *AppSpec) IsSystem() bool { return s.Type == TypeSystem }

// IsBatch reports whether the spec is of type batch.
func (s *AppSpec) IsBatch() bool { return s.Type == TypeBatch }

// BatchCompletions returns Completions or its default.
func (s *AppSpec) BatchCompletions() int { return intOr(s.Completions, DefaultCompletions) }

// BatchParallelism returns Parallelism or its default.
func (s *AppSpec) BatchParallelism() int { return intOr(s.Parallelism, DefaultParallelism) }

// BatchBackoffLimit returns BackoffLimit or its default.
func (s *AppSpec) BatchBackoffLimit() int { return intOr(s.BackoffLimit, DefaultBackoffLimit) }

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// normalizeJob fills the type's defaults. Service is stored as "" so
// specs written before types existed keep their template hash. A batch
// app's restart policy defaults to never: a failed instance is replaced
// by a new one (possibly on another node) and counts against
// BackoffLimit.
func (s *AppSpec) normalizeJob() {
	if s.Type == TypeService {
		s.Type = ""
	}
	if !s.IsBatch() {
		return
	}
	for _, p := range []struct {
		f   **int
		def int
	}{{&s.Completions, DefaultCompletions}, {&s.Parallelism, DefaultParallelism}, {&s.BackoffLimit, DefaultBackoffLimit}} {
		if *p.f == nil {
			v := p.def
			*p.f = &v
		}
	}
	if s.Restart == nil {
		s.Restart = &RestartPolicy{}
	}
	if s.Restart.Policy == "" {
		s.Restart.Policy = RestartNever
	}
}

// job checks the type and its fields.
func (v *validator) job(s *AppSpec) {
	switch s.Type {
	case "", TypeService:
	case TypeSystem:
		if s.Instances != nil {
			v.add("instances", "is not used with type system: it runs one instance on every ready node that matches the constraints; remove instances")
		}
	case TypeBatch:
		if s.Instances != nil {
			v.add("instances", "is not used with type batch; set completions (how many must succeed) and parallelism (how many run at once)")
		}
		if r := s.Restart; r != nil && r.Policy == RestartAlways {
			v.add("restart.policy", "must be never or on-failure for type batch: an instance that succeeded is not run again")
		}
		v.count("completions", s.Completions, 1, MaxInstancesPerApp)
		v.count("parallelism", s.Parallelism, 1, MaxInstancesPerApp)
		v.count("backoffLimit", s.BackoffLimit, 0, maxBackoffLimit)
		return
	default:
		v.add("type", "must be service, system or batch, got %q", s.Type)
	}
	for _, f := range []struct {
		name string
		p    *int
	}{{"completions", s.Completions}, {"parallelism", s.Parallelism}, {"backoffLimit", s.BackoffLimit}} {
		if f.p != nil {
			v.add(f.name, "is only used with type batch")
		}
	}
}

func (v *validator) count(field string, p *int, lo, hi int) {
	if p != nil && (*p < lo || *p > hi) {
		v.add(field, "must be between %d and %d, got %d", lo, hi, *p)
	}
}

// JobStatus is the progress of a batch app's current revision.
type JobStatus struct {
	// Completions is how many instances must succeed.
	Completions int `json:"completions"`
	// Succeeded counts instances that exited 0.
	Succeeded int `json:"succeeded"`
	// Failed counts failed attempts (see Instance.FailedAttempts).
	Failed int `json:"failed"`
	// Active counts instances pending or running.
	Active int `json:"active"`
	// Complete is true once Succeeded reached Completions.
	Complete bool `json:"complete,omitempty"`
	// JobFailed is true once Failed exceeded the backoff limit.
	JobFailed bool `json:"jobFailed,omitempty"`
}

// Succeeded reports whether an active instance has finished successfully:
// it exited 0 and its restart policy does not run it again.
func (i *Instance) Succeeded() bool {
	return i.Outcome == OutcomeSucceeded ||
		(i.Outcome == "" && i.Active() && i.Node != "" && i.Status.State == StateStopped && i.Status.ExitCode == 0)
}

// FailedFinally reports whether an instance has failed and will not be
// restarted in place.
func (i *Instance) FailedFinally() bool {
	return i.Outcome == OutcomeFailed ||
		(i.Outcome == "" && i.Active() && i.Status.State == StateFailed && i.Status.NextRestartAt == nil)
}

// FailedAttempts counts an instance's failures against a batch app's
// backoff limit: in-place restarts after failed exits (restart policy
// on-failure), failed starts the agent retries (Status.Failures), or its
// one final failure.
func (i *Instance) FailedAttempts() int {
	n := max(i.Status.Restarts, i.Status.Failures)
	if n == 0 && i.FailedFinally() {
		n = 1
	}
	return n
}

// BatchProgress counts a batch app's instances of its current revision.
// Instances carry their outcome once the deployment controller recorded
// it; until then their status decides.
func BatchProgress(app *App, insts []Instance) JobStatus {
	js := JobStatus{Completions: app.Spec.BatchCompletions()}
	for i := range insts {
		in := &insts[i]
		if in.Revision != app.Revision {
			continue
		}
		js.Failed += in.FailedAttempts()
		switch {
		case in.Succeeded():
			js.Succeeded++
		case in.FailedFinally():
		case in.Active():
			js.Active++
		}
	}
	js.Complete = js.Succeeded >= js.Completions
	js.JobFailed = !js.Complete && js.Failed > app.Spec.BatchBackoffLimit()
	return js
}

// TypeStatus adjusts a status computed the service way (apps.Status) to
// the app's type; call it last.
//
//   - system: Desired is the number of active instances of the current
//     revision (one per eligible node, as the deployment loop creates
//     them), and Converged follows from it.
//   - batch: Job holds the progress; Desired is how many run now;
//     Converged means complete and Failing means the job failed (an
//     instance failing is retried and does not make the app failing).
func TypeStatus(app *App, insts []Instance, st *AppStatus) {
	switch {
	case app.Deleting:
	case app.Spec.IsSystem():
		st.Desired = 0
		for i := range insts {
			if insts[i].Active() && insts[i].Revision == app.Revision {
				st.Desired++
			}
		}
		st.Converged = st.Ready == st.Desired && st.Outdated == 0 && st.Stopping == 0 &&
			st.Ready == st.Running && st.Pending == 0 && st.Failed == 0
		if st.Converged {
			st.Failing, st.Message = false, ""
		}
	case app.Spec.IsBatch():
		js := BatchProgress(app, insts)
		st.Job = &js
		st.Desired = 0
		if !js.Complete && !js.JobFailed {
			st.Desired = min(app.Spec.BatchParallelism(), js.Completions-js.Succeeded)
		}
		st.Converged, st.Failing = js.Complete, js.JobFailed
		switch {
		case js.Complete:
			st.Message = ""
		case js.JobFailed:
			st.Message = fmt.Sprintf("job failed: %d failures exceed backoffLimit %d (%d/%d succeeded)",
				js.Failed, app.Spec.BatchBackoffLimit(), js.Succeeded, js.Completions)
		}
	}
}
