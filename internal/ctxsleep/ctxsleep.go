// Package ctxsleep waits for a duration or a context, whichever ends
// first: the backoff and polling pause of berth's loops.
package ctxsleep

import (
	"context"
	"time"
)

// Sleep waits d and reports true, or false as soon as ctx ends. A d of
// zero or less only reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
