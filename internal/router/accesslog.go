package router

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// accessLog writes one line per request:
//
//	2026-11-24T13:00:00.123Z client=10.0.0.1:5123 host=a.test method=GET path=/x status=200 upstream=10.0.0.2:20001 route="default/web a.test/" dur=1.234ms
//
// and one per tcp connection when it ends. A nil writer logs nothing.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func newAccessLog(w io.Writer) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w}
}

func (l *accessLog) line(start time.Time, client, host, method, path string, status int, upstream, route string, dur time.Duration) {
	if l == nil {
		return
	}
	if upstream == "" {
		upstream = "-"
	}
	l.write(fmt.Sprintf("%s client=%s host=%s method=%s path=%q status=%d upstream=%s route=%q dur=%s\n",
		start.UTC().Format(time.RFC3339Nano), client, host, method, path, status, upstream, route, dur.Round(time.Microsecond)))
}

func (l *accessLog) tcpLine(start time.Time, client string, port int, result, upstream, route string, in, out int64, dur time.Duration) {
	if l == nil {
		return
	}
	if upstream == "" {
		upstream = "-"
	}
	l.write(fmt.Sprintf("%s client=%s tcp=:%d result=%q upstream=%s route=%q in=%d out=%d dur=%s\n",
		start.UTC().Format(time.RFC3339Nano), client, port, result, upstream, route, in, out, dur.Round(time.Microsecond)))
}

// write emits one whole line at a time.
func (l *accessLog) write(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s)
}
