package workers

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDoRunsOnAWorkerAndWaits(t *testing.T) {
	p := New(0, time.Minute)
	var ran atomic.Bool
	p.Do(func() { time.Sleep(10 * time.Millisecond); ran.Store(true) })
	if !ran.Load() {
		t.Fatal("Do returned before its task did")
	}
}

// A busy pool grows instead of making tasks wait, and idle workers are
// reused, then exit.
func TestPoolGrowsReusesAndShrinks(t *testing.T) {
	base := runtime.NumGoroutine()
	const n = 20
	p := New(n, 200*time.Millisecond)
	var wg sync.WaitGroup
	release := make(chan struct{})
	var started atomic.Int32
	wg.Add(n)
	for range n {
		p.Go(func() { defer wg.Done(); started.Add(1); <-release })
	}
	deadline := time.Now().Add(5 * time.Second)
	for started.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := started.Load(); got != n {
		t.Fatalf("%d of %d blocking tasks started: a busy pool made tasks wait", got, n)
	}
	close(release)
	wg.Wait()
	time.Sleep(20 * time.Millisecond) // the workers go back to waiting
	grown := runtime.NumGoroutine()
	for range 100 {
		p.Do(func() {})
	}
	if now := runtime.NumGoroutine(); now > grown {
		t.Fatalf("goroutines %d → %d for sequential tasks: idle workers were not reused", grown, now)
	}
	for time.Now().Before(deadline) && runtime.NumGoroutine() > base {
		time.Sleep(10 * time.Millisecond)
	}
	if now := runtime.NumGoroutine(); now > base {
		t.Fatalf("%d goroutines after the workers idled, want %d", now, base)
	}
}

// After a burst, only maxIdle workers stay to wait for the next task.
func TestBurstLeavesAtMostMaxIdleWorkers(t *testing.T) {
	base := runtime.NumGoroutine()
	p := New(3, time.Minute)
	const n = 30
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(n)
	for range n {
		p.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && runtime.NumGoroutine() > base+3 {
		time.Sleep(10 * time.Millisecond)
	}
	if now := runtime.NumGoroutine(); now != base+3 {
		t.Fatalf("%d workers stayed after a burst of %d, want 3", now-base, n)
	}
}
