package clusterview

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// script is a fake view server: connection i gets the lines of
// conns[i] and then, if hold, stays open without a line (a stall);
// otherwise it ends. It records each connection's ?after.
type script struct {
	mu     sync.Mutex
	conns  [][]Line
	hold   []bool
	afters []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.afters)
	s.afters = append(s.afters, r.URL.Query().Get("after"))
	var lines []Line
	hold := false
	if i < len(s.conns) {
		lines, hold = s.conns[i], s.hold[i]
	}
	s.mu.Unlock()
	if r.URL.Path != "/v1/cluster/view" || r.URL.Query().Get("watch") != "true" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if i >= len(s.conns) {
		http.Error(w, "no more", http.StatusServiceUnavailable)
		return
	}
	enc := json.NewEncoder(w)
	for _, l := range lines {
		_ = enc.Encode(l)
	}
	w.(http.Flusher).Flush()
	if hold {
		<-r.Context().Done()
	}
}

func (s *script) afterList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.afters...)
}

func snap(rev int64, nodes ...string) Line {
	v := View{Rev: rev}
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, model.Node{Name: n})
	}
	return Line{Type: LineSnapshot, Rev: rev, View: &v}
}

func next(t *testing.T, ch <-chan table.Snapshot) table.Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot in 10s")
	}
	return table.Snapshot{}
}

// The source forwards snapshots, reconnects when the stream ends or
// stalls, and resumes with the last revision it has; an error answer is
// retried with backoff. Closing ctx closes the channel.
func TestSourceReconnectsAndResumes(t *testing.T) {
	s := &script{
		conns: [][]Line{
			{snap(5, "a")},                         // then ends
			{{Type: LineProgress, Rev: 5}},         // unchanged since 5; stalls
			{snap(7, "a", "b"), {Type: "unknown"}}, // then ends
		},
		hold: []bool{false, true, false},
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := New(Options{Server: srv.URL, StallTimeout: 300 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ch, err := src.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch); got.Rev != 5 || len(got.Nodes) != 1 {
		t.Fatalf("first snapshot %+v", got)
	}
	if got := next(t, ch); got.Rev != 7 || len(got.Nodes) != 2 {
		t.Fatalf("after the stall %+v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.afterList()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the 4th attempt gets 503 and is retried
	}
	a := s.afterList()
	if len(a) < 4 || a[0] != "0" || a[1] != "5" || a[2] != "5" || a[3] != "7" {
		t.Fatalf("?after of each connection: %v, want 0 5 5 7 ...", a)
	}
	cancel()
	for range ch { // drains, then closed
	}
}
