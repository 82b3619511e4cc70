package router

import (
	"net/http"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// TestRevisionStats proxies requests to two revisions, one of which
// answers 500, and reads the figures the deployment controller's canary
// analysis uses.
func TestRevisionStats(t *testing.T) {
	st := newStore(t)
	split := route("web.test")
	split.Traffic = &model.Traffic{Stable: 1, Canary: 2, Weights: []model.TrafficWeight{{Target: model.RefCanary, Weight: 50}}}
	putApp(t, st, "web", 2, split)
	ok := backend(t, "v1")
	bad := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	putInstance(t, st, "web", "a", 1, hostPort(ok))
	putInstance(t, st, "web", "b", 2, hostPort(bad))
	r := startRouter(t, st, Options{})
	eventually(t, "both revisions", func() bool { return backendsOf(r, "web.test", "/") == "a,b" })
	c := newClient(t)
	for i := 0; i < 40; i++ {
		get(t, c, r, "web.test", "/")
	}
	s1, s2 := r.RevisionStats("default", "web", 1, time.Minute), r.RevisionStats("default", "web", 2, time.Minute)
	if s1.Requests+s2.Requests != 40 || s1.Errors != 0 || s2.Errors != s2.Requests || s2.Requests == 0 {
		t.Fatalf("stable %+v canary %+v", s1, s2)
	}
	if s2.P99.Duration < 20*time.Millisecond || s1.P99.Duration >= s2.P99.Duration {
		t.Fatalf("p99 stable %s canary %s", s1.P99.Duration, s2.P99.Duration)
	}
	if s := r.RevisionStats("default", "other", 1, time.Minute); s.Requests != 0 {
		t.Fatalf("unknown app: %+v", s)
	}
	// A route without a split is not tracked.
	putApp(t, st, "plain", 1, route("plain.test"))
	putInstance(t, st, "plain", "p", 1, hostPort(ok))
	eventually(t, "plain route", func() bool { return backendsOf(r, "plain.test", "/") == "p" })
	get(t, c, r, "plain.test", "/")
	if s := r.RevisionStats("default", "plain", 1, time.Minute); s.Requests != 0 {
		t.Fatalf("untracked route counted: %+v", s)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, time.Second, time.Hour} {
		b := latencyBucket(d)
		if b < prev || b >= latencyBuckets || d > latencyBase && latencyBound(b) < d && b != latencyBuckets-1 {
			t.Fatalf("bucket of %s: %d (bound %s)", d, b, latencyBound(b))
		}
		prev = b
	}
}
