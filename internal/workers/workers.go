// Package workers runs short tasks on goroutines that outlive them: a
// pool that grows when every worker is busy and shrinks when workers
// idle.
//
// A goroutine's stack grows to the deepest call it ever made and shrinks
// only while little of it is in use. A goroutine per connection that
// mostly waits in Read (one per agent, thousands of them) keeps a small
// stack if it hands the deep work (decoding, answering) to a pool whose
// few workers keep their grown stacks; a task started with `go` would
// instead grow a fresh stack each time.
package workers

import (
	"sync/atomic"
	"time"
)

// Defaults for New's arguments left zero.
const (
	DefaultMaxIdle = 16
	DefaultIdle    = 10 * time.Second
)

// Pool runs tasks on its workers. The zero value is not usable; use New.
type Pool struct {
	maxIdle int64
	idleFor time.Duration
	idle    atomic.Int64 // workers waiting for a task
	work    chan func()  // unbuffered: a send succeeds only to an idle worker
}

// New returns a pool that keeps at most maxIdle workers waiting for tasks
// (a burst's extra workers exit when done), each for at most idleFor.
// Zero arguments take the defaults.
func New(maxIdle int, idleFor time.Duration) *Pool {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdle
	}
	if idleFor <= 0 {
		idleFor = DefaultIdle
	}
	return &Pool{maxIdle: int64(maxIdle), idleFor: idleFor, work: make(chan func())}
}

// Go runs f on an idle worker, or on a new one if none is idle. It never
// waits for f.
func (p *Pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		go p.worker(f)
	}
}

// Do runs f on a worker and returns when f has.
func (p *Pool) Do(f func()) {
	done := make(chan struct{})
	p.Go(func() {
		defer close(done)
		f()
	})
	<-done
}

func (p *Pool) worker(f func()) {
	var t *time.Timer
	for {
		f()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(p.idleFor)
			defer t.Stop()
		} else {
			t.Reset(p.idleFor)
		}
		select {
		case f = <-p.work:
			p.idle.Add(-1)
		case <-t.C:
			p.idle.Add(-1)
			return
		}
	}
}
