package router

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// StatsRetention is how far back RevisionStats can look.
const StatsRetention = model.MaxAnalysisWindow

const (
	statsSeconds = int(StatsRetention / time.Second)
	// Latency buckets grow by latencyGrowth from latencyBase; the last
	// one takes everything slower.
	latencyBuckets = 40
	latencyBase    = 500 * time.Microsecond
	latencyGrowth  = 1.4
)

// revKey names one revision of one app.
type revKey struct {
	ns, app string
	rev     int64
}

// upstreamKey is one backend of one route.
type upstreamKey struct{ route, addr string }

// secondBucket holds one second of one revision's outcomes.
type secondBucket struct {
	sec      int64
	requests int64
	errors   int64
	latency  [latencyBuckets]int32
}

// revisionStats keeps the outcome of every request proxied on a route
// that splits traffic between revisions (rules or weights: a canary) by
// the revision of the instance that served it, in one-second buckets
// over StatsRetention, for the deployment controller's canary analysis.
type revisionStats struct {
	now func() time.Time
	// upstreams maps route ID and upstream address to the revision
	// behind it, rebuilt with every table; only split routes are in it,
	// so other requests cost one lookup that misses.
	upstreams atomic.Pointer[map[upstreamKey]revKey]
	mu        sync.Mutex
	rings     map[revKey]*[statsSeconds]secondBucket
}

func newRevisionStats() *revisionStats {
	s := &revisionStats{now: time.Now, rings: map[revKey]*[statsSeconds]secondBucket{}}
	empty := map[upstreamKey]revKey{}
	s.upstreams.Store(&empty)
	return s
}

// install learns which revision every backend of t serves and forgets
// revisions no longer in any route.
func (s *revisionStats) install(t *table.Table) {
	m := map[upstreamKey]revKey{}
	live := map[revKey]bool{}
	for _, r := range t.Routes {
		// Only routes that split traffic between revisions (a canary) are
		// tracked: the figures exist to compare them, and each tracked
		// revision costs a ring of buckets.
		if !r.Policy.Split || len(r.Policy.Rules)+len(r.Policy.Weights) == 0 {
			continue
		}
		for _, b := range r.Backends {
			k := revKey{r.Namespace, r.App, b.Revision}
			m[upstreamKey{r.ID, b.Addr}] = k
			live[k] = true
		}
	}
	s.upstreams.Store(&m)
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := s.now().Add(-StatsRetention).Unix()
	for k, ring := range s.rings {
		if live[k] {
			continue
		}
		newest := int64(0)
		for i := range ring {
			newest = max(newest, ring[i].sec)
		}
		if newest < cutoff {
			delete(s.rings, k)
		}
	}
}

func latencyBucket(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(latencyBase)) / math.Log(latencyGrowth)))
	return min(i, latencyBuckets-1)
}

func latencyBound(i int) time.Duration {
	return time.Duration(float64(latencyBase) * math.Pow(latencyGrowth, float64(i)))
}

// record counts one request; a 5xx answer or a proxy error is an error.
func (s *revisionStats) record(route, upstream string, code int, d time.Duration, errKind string) {
	if upstream == "" {
		return
	}
	k, ok := (*s.upstreams.Load())[upstreamKey{route, upstream}]
	if !ok {
		return
	}
	sec := s.now().Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.rings[k]
	if ring == nil {
		ring = new([statsSeconds]secondBucket)
		s.rings[k] = ring
	}
	b := &ring[sec%int64(statsSeconds)]
	if b.sec != sec {
		*b = secondBucket{sec: sec}
	}
	b.requests++
	if code >= 500 || errKind != "" {
		b.errors++
	}
	b.latency[latencyBucket(d)]++
}

// stats sums the last window of one revision.
func (s *revisionStats) stats(k revKey, window time.Duration) model.RevisionStats {
	window = min(window, StatsRetention)
	now := s.now().Unix()
	from := now - int64(window/time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out model.RevisionStats
	ring := s.rings[k]
	if ring == nil {
		return out
	}
	var lat [latencyBuckets]int64
	for i := range ring {
		b := &ring[i]
		if b.sec <= from || b.sec > now {
			continue
		}
		out.Requests += b.requests
		out.Errors += b.errors
		for j, n := range b.latency {
			lat[j] += int64(n)
		}
	}
	if out.Requests > 0 {
		need := int64(math.Ceil(float64(out.Requests) * 0.99))
		var seen int64
		for j, n := range lat {
			seen += n
			if seen >= need {
				out.P99 = model.D(latencyBound(j))
				break
			}
		}
	}
	return out
}

// RevisionStats sums the requests revision rev of app ns/name served
// through this router over the last window (at most StatsRetention):
// count, errors (5xx answers and proxy errors) and p99 latency (the
// upper bound of a latency bucket, buckets 40% apart). It satisfies the
// deployment controller's Metrics.
func (r *Router) RevisionStats(ns, app string, rev int64, window time.Duration) model.RevisionStats {
	return r.metrics.revs.stats(revKey{ns, app, rev}, window)
}
