package mock

import (
	"context"
	"io"
	"strings"
	"sync"

	"github.com/berth-dev/berth/internal/driver"
)

// logBuffer keeps a workload's output lines and wakes followers.
type logBuffer struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every change
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.wake()
}

func (l *logBuffer) wake() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// reader streams lines; with Follow it keeps streaming until the current
// run ends or ctx is done.
func (l *logBuffer) reader(ctx context.Context, o driver.LogOptions, exited func() <-chan struct{}) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		l.mu.Lock()
		next := 0
		if o.Tail > 0 && len(l.lines) > o.Tail {
			next = len(l.lines) - o.Tail
		}
		l.mu.Unlock()
		for {
			l.mu.Lock()
			batch := append([]string(nil), l.lines[next:]...)
			next = len(l.lines)
			changed := l.changed
			l.mu.Unlock()
			if len(batch) > 0 {
				if _, err := io.WriteString(pw, strings.Join(batch, "\n")+"\n"); err != nil {
					return
				}
			}
			if !o.Follow {
				pw.Close()
				return
			}
			select {
			case <-changed:
			case <-exited():
				l.mu.Lock()
				rest := l.lines[next:]
				l.mu.Unlock()
				if len(rest) > 0 {
					_, _ = io.WriteString(pw, strings.Join(rest, "\n")+"\n")
				}
				pw.Close()
				return
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			}
		}
	}()
	return pr
}
