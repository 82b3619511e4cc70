package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// errClaimRace: a route claim changed between reading it and the apply's
// transaction; Apply retries, and the next read names the winner.
var errClaimRace = errors.New("route claim changed concurrently")

// routeClaims returns the compares and writes that make app ns/name the
// owner of every claim of routes and release the claims of old routes it
// no longer has. A claim held by another app that still has that route is
// a conflict naming the owner; one left behind by an app that is gone, or
// no longer has the route, is taken over (comparing the old owner's app
// key, so a concurrent re-apply of the old owner cannot also win).
func (s *Service) routeClaims(ctx context.Context, ns, name string, routes, old []model.Route) ([]store.Compare, []store.Op, error) {
	var cmps []store.Compare
	var ops []store.Op
	mine, err := json.Marshal(model.RouteClaim{Namespace: ns, App: name})
	if err != nil {
		return nil, nil, err
	}
	keep := map[string]bool{}
	for i := range routes {
		r := &routes[i]
		key := r.ClaimKey()
		keep[key] = true
		kv, err := s.Store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			cmps = append(cmps, store.Compare{Key: key, ModRev: 0})
			ops = append(ops, store.Put(key, claimValue(mine, r)))
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var c model.RouteClaim
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			return nil, nil, fmt.Errorf("route claim %s: %w", key, err)
		}
		if c.Namespace == ns && c.App == name {
			cmps = append(cmps, store.Compare{Key: key, ModRev: kv.ModRev})
			continue
		}
		ownerKey := model.AppKey(c.Namespace, c.App)
		owner, err := store.GetJSON[model.App](ctx, s.Store, ownerKey)
		switch {
		case errors.Is(err, store.ErrNotFound):
			owner.ModRev = 0 // gone: take the claim over
		case err != nil:
			return nil, nil, err
		case hasClaim(owner.Value.Spec.Routes, key):
			what := "is"
			if owner.Value.Deleting {
				what = "is still (being deleted)"
			}
			return nil, nil, fmt.Errorf("%w: routes[%d]: %s %s routed to app %q in namespace %q; remove the route there first or pick another host or path",
				errConflictPlain, i, r.ClaimName(), what, c.App, c.Namespace)
		}
		cmps = append(cmps, store.Compare{Key: key, ModRev: kv.ModRev}, store.Compare{Key: ownerKey, ModRev: owner.ModRev})
		ops = append(ops, store.Put(key, claimValue(mine, r)))
	}
	for i := range old {
		key := old[i].ClaimKey()
		if keep[key] {
			continue
		}
		kv, err := s.Store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var c model.RouteClaim
		if json.Unmarshal(kv.Value, &c) == nil && c.Namespace == ns && c.App == name {
			cmps = append(cmps, store.Compare{Key: key, ModRev: kv.ModRev})
			ops = append(ops, store.Delete(key))
		}
	}
	return cmps, ops, nil
}

// claimValue is the stored claim: owner plus what it claims.
func claimValue(owner []byte, r *model.Route) []byte {
	var c model.RouteClaim
	_ = json.Unmarshal(owner, &c)
	c.What = r.ClaimName()
	b, _ := json.Marshal(c)
	return b
}

func hasClaim(routes []model.Route, key string) bool {
	for i := range routes {
		if routes[i].ClaimKey() == key {
			return true
		}
	}
	return false
}
