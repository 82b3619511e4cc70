package agent

import (
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// restartDelay is the wait before the n-th consecutive restart (n >= 1):
// InitialDelay doubled per failure, capped at MaxDelay.
func restartDelay(p *model.RestartPolicy, n int) time.Duration {
	initial, max := model.DefaultRestartInitial, model.DefaultRestartMax
	if p != nil {
		if p.InitialDelay.Duration > 0 {
			initial = p.InitialDelay.Duration
		}
		if p.MaxDelay.Duration > 0 {
			max = p.MaxDelay.Duration
		}
	}
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// shouldRestart applies the restart policy to an exit code.
func shouldRestart(p *model.RestartPolicy, exitCode int) bool {
	policy := model.RestartAlways
	if p != nil && p.Policy != "" {
		policy = p.Policy
	}
	switch policy {
	case model.RestartNever:
		return false
	case model.RestartOnFailure:
		return exitCode != 0
	}
	return true
}
