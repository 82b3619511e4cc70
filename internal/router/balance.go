package router

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// upstream is the shared state of one backend address.
type upstream struct {
	addr   string
	active atomic.Int64 // requests and tcp connections in flight

	idleMu sync.Mutex
	idle   []*h1Conn // the lean client's idle connections, most recent last
	gone   bool      // left the table: keep no idle connections
}

// balancer picks a backend among candidates. Round-robin counters are per
// route; active counts are per upstream address, shared by every route
// that uses it. Picks take only the read lock and allocate nothing unless
// instances were already tried; the write lock is for new routes and
// upstreams and for pruning.
type balancer struct {
	mu  sync.RWMutex
	ups map[string]*upstream
	rr  map[string]*atomic.Uint64
}

func newBalancer() *balancer {
	return &balancer{ups: map[string]*upstream{}, rr: map[string]*atomic.Uint64{}}
}

// counter returns the round-robin counter of a route.
func (b *balancer) counter(routeID string) *atomic.Uint64 {
	b.mu.RLock()
	c := b.rr[routeID]
	b.mu.RUnlock()
	if c != nil {
		return c
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c = b.rr[routeID]; c == nil {
		c = new(atomic.Uint64)
		b.rr[routeID] = c
	}
	return c
}

// upstream returns the shared state of one backend address.
func (b *balancer) upstream(addr string) *upstream {
	b.mu.RLock()
	u := b.ups[addr]
	b.mu.RUnlock()
	if u != nil {
		return u
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if u = b.ups[addr]; u == nil {
		u = &upstream{addr: addr}
		b.ups[addr] = u
	}
	return u
}

// pick chooses among cands minus the addresses already tried; ok is false
// when none is left. The caller increments the upstream's active count.
func (b *balancer) pick(r *table.Route, cands []table.Backend, tried []string) (table.Backend, *upstream, bool) {
	left := cands
	if len(tried) > 0 {
		left = make([]table.Backend, 0, len(cands))
		for _, c := range cands {
			if !slices.Contains(tried, c.Addr) {
				left = append(left, c)
			}
		}
	}
	if len(left) == 0 {
		return table.Backend{}, nil, false
	}
	n := uint64(len(left))
	start := int((b.counter(r.ID).Add(1) - 1) % n)
	if r.Spec.Balance != model.BalanceLeastConnections {
		return left[start], b.upstream(left[start].Addr), true
	}
	best, bestUp := start, b.upstream(left[start].Addr)
	for k := 1; k < len(left); k++ {
		i := (start + k) % len(left)
		if u := b.upstream(left[i].Addr); u.active.Load() < bestUp.active.Load() {
			best, bestUp = i, u
		}
	}
	return left[best], bestUp, true
}

// prune forgets routes and upstreams that are no longer in t.
func (b *balancer) prune(t *table.Table) {
	routes := map[string]bool{}
	addrs := map[string]bool{}
	for _, r := range t.Routes {
		routes[r.ID] = true
		for _, be := range r.Backends {
			addrs[be.Addr] = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.rr {
		if !routes[id] {
			delete(b.rr, id)
		}
	}
	for a, u := range b.ups {
		if !addrs[a] {
			delete(b.ups, a)
			u.closeIdle(time.Time{}, true)
		}
	}
}

// closeIdle closes idle connections unused since before, of every
// upstream (all of them, for good, with gone).
func (b *balancer) closeIdle(before time.Time, gone bool) {
	b.mu.RLock()
	ups := make([]*upstream, 0, len(b.ups))
	for _, u := range b.ups {
		ups = append(ups, u)
	}
	b.mu.RUnlock()
	for _, u := range ups {
		u.closeIdle(before, gone)
	}
}
