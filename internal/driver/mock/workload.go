package mock

import (
	"context"
	"net/netip"
	"time"

	"github.com/berth-dev/berth/internal/driver"
)

// Signals a run can receive.
const (
	sigTerm = 15
	sigKill = 9
)

// workload is one simulated container; each start begins a new run.
type workload struct {
	id       string
	instance string
	labels   map[string]string
	env      map[string]string
	steps    []step
	logs     *logBuffer
	// ip is the workload's made-up address (Status.IP).
	ip netip.Addr

	// Guarded by logs.mu, which serializes the whole workload.
	running    bool
	exitCode   int
	startedAt  time.Time
	finishedAt time.Time
	signals    chan int
	done       chan struct{}
}

func (w *workload) start() {
	w.logs.mu.Lock()
	defer w.logs.mu.Unlock()
	if w.running {
		return
	}
	w.running, w.exitCode, w.startedAt = true, 0, time.Now()
	w.signals, w.done = make(chan int, 2), make(chan struct{})
	go w.execute(w.signals, w.done)
}

// exited returns a channel closed when the current run ends (closed at
// once if it is not running).
func (w *workload) exited() <-chan struct{} {
	w.logs.mu.Lock()
	defer w.logs.mu.Unlock()
	if w.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return w.done
}

func (w *workload) status() driver.Status {
	w.logs.mu.Lock()
	defer w.logs.mu.Unlock()
	st := driver.Status{ID: w.id, InstanceID: w.instance, Labels: w.labels, ExitCode: w.exitCode,
		StartedAt: w.startedAt, FinishedAt: w.finishedAt, State: driver.StateExited, IP: w.ip}
	if w.running {
		st.State = driver.StateRunning
	}
	return st
}

// stop sends SIGTERM, waits up to grace, then kills.
func (w *workload) stop(ctx context.Context, grace time.Duration) {
	w.logs.mu.Lock()
	running, sig, done := w.running, w.signals, w.done
	w.logs.mu.Unlock()
	if !running {
		return
	}
	select {
	case sig <- sigTerm:
	default: // signals already pending
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	select {
	case sig <- sigKill:
	default:
	}
	<-done
}

// execute runs the steps until they end or a signal ends them.
func (w *workload) execute(signals chan int, done chan struct{}) {
	code := w.run(signals)
	w.logs.mu.Lock()
	w.running, w.exitCode, w.finishedAt = false, code, time.Now()
	close(done)
	w.logs.mu.Unlock()
	w.logs.wake()
}

func (w *workload) run(signals chan int) int {
	term := "default"
	wait := func(d time.Duration) (int, bool) {
		var timeout <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		for {
			select {
			case <-timeout:
				return 0, false
			case s := <-signals:
				switch {
				case s == sigKill:
					return 137, true
				case term == "ignore":
				case term == "trap":
					w.logs.add("got-term")
					return 0, true
				default:
					return 143, true
				}
			}
		}
	}
	for _, st := range w.steps {
		switch st.verb {
		case "print", "stderr":
			w.logs.add(expand(st.arg, w.env))
		case "trap-term":
			term = "trap"
		case "ignore-term":
			term = "ignore"
		case "sleep":
			if code, ended := wait(st.d); ended {
				return code
			}
		case "run":
			code, _ := wait(0)
			return code
		case "exit":
			return st.code
		}
	}
	return 0
}
