package router

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// upstream is the shared state of one backend address.
type upstream struct {
	addr   string
	active atomic.Int64 // requests and tcp connections in flight
}

// balancer picks a backend among candidates. Round-robin counters are per
// route; active counts are per upstream address, shared by every route
// that uses it.
type balancer struct {
	mu  sync.Mutex
	ups map[string]*upstream
	rr  map[string]*atomic.Uint64
}

func newBalancer() *balancer {
	return &balancer{ups: map[string]*upstream{}, rr: map[string]*atomic.Uint64{}}
}

func (b *balancer) state(routeID string, addrs []table.Backend) (*atomic.Uint64, []*upstream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.rr[routeID]
	if c == nil {
		c = new(atomic.Uint64)
		b.rr[routeID] = c
	}
	ups := make([]*upstream, len(addrs))
	for i, be := range addrs {
		u := b.ups[be.Addr]
		if u == nil {
			u = &upstream{addr: be.Addr}
			b.ups[be.Addr] = u
		}
		ups[i] = u
	}
	return c, ups
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
	counter, ups := b.state(r.ID, left)
	n := uint64(len(left))
	start := int((counter.Add(1) - 1) % n)
	if r.Spec.Balance != model.BalanceLeastConnections {
		return left[start], ups[start], true
	}
	best := start
	for k := 1; k < len(left); k++ {
		i := (start + k) % len(left)
		if ups[i].active.Load() < ups[best].active.Load() {
			best = i
		}
	}
	return left[best], ups[best], true
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
	for a := range b.ups {
		if !addrs[a] {
			delete(b.ups, a)
		}
	}
}
