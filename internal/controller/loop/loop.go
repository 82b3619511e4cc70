// Package loop runs a level-triggered reconcile function whenever keys
// under some store prefixes change, coalescing bursts, and at least once
// per resync period.
package loop

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/store"
)

// Options configure Run.
type Options struct {
	// Name identifies the loop in logs.
	Name     string
	Store    store.Store
	Prefixes []string
	// Resync is the longest time between two passes (default 5s).
	Resync time.Duration
	Log    *slog.Logger
}

// Run calls reconcile once at start, after changes under the prefixes and
// on every resync tick, until ctx ends. reconcile returning an error (or
// asking for a retry with true) schedules another pass soon.
func Run(ctx context.Context, o Options, reconcile func(ctx context.Context) (again bool, err error)) {
	if o.Resync == 0 {
		o.Resync = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	kick := make(chan struct{}, 1)
	trigger := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for _, p := range o.Prefixes {
		go watch(ctx, o, p, trigger)
	}
	trigger()
	tick := time.NewTicker(o.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-tick.C:
		}
		if ctx.Err() != nil {
			return // select picks among ready cases at random
		}
		start := time.Now()
		again, err := reconcile(ctx)
		took := time.Since(start)
		if err != nil && ctx.Err() == nil {
			o.Log.Warn("reconcile failed", "loop", o.Name, "err", err)
			again = true
			ctxsleep.Sleep(ctx, 200*time.Millisecond)
		}
		if again {
			trigger()
		}
		// Rest as long as the pass took: changes that arrive meanwhile
		// share the next pass. Cheap passes (a small cluster) hardly
		// wait; a loop over thousands of nodes spends at most half its
		// time reconciling instead of one pass per node that joins.
		ctxsleep.Sleep(ctx, min(took, maxRest))
	}
}

// maxRest bounds the rest between passes.
const maxRest = time.Second

// watch triggers on every change under prefix, re-watching from the
// current revision when the store drops the watcher.
func watch(ctx context.Context, o Options, prefix string, trigger func()) {
	for ctx.Err() == nil {
		rev, err := o.Store.Rev(ctx)
		if err != nil {
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		ch, err := o.Store.Watch(ctx, prefix, rev)
		if err != nil {
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		trigger() // anything may have changed before this watch began
		for range ch {
			trigger()
		}
	}
}
