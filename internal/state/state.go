// Package state is the control plane's in-memory view of the store: one
// cache (internal/store/cache) with the tables that the controllers and
// the API's request checks read on every pass or request — apps,
// instances, nodes and node certificates — decoded once per change
// instead of once per reader. Reads are as fresh as the store's.
package state

import (
	"log/slog"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/cache"
)

// State is the server's shared view. Objects it returns are shared by
// every reader: never modify them; copy the value first.
type State struct {
	Cache     *cache.Cache
	Apps      *cache.Table[model.App]
	Instances *cache.Table[model.Instance]
	Nodes     *cache.Table[model.Node]
	NodeCerts *cache.Table[model.NodeCert]
}

// New makes the view of st; it starts with its first read, or with
// s.Cache.Start, and lives until st closes.
func New(st store.Store, log *slog.Logger) *State {
	c := cache.New(st, log)
	return &State{Cache: c,
		Apps:      cache.Register[model.App](c, model.PrefixApps),
		Instances: cache.Register[model.Instance](c, model.PrefixInstances),
		Nodes:     cache.Register[model.Node](c, model.PrefixNodes),
		NodeCerts: cache.Register[model.NodeCert](c, model.PrefixNodeCerts),
	}
}

// Or returns s, or a new view of st when s is nil: a component built on
// its own (in tests) gets a private view.
func Or(s *State, st store.Store, log *slog.Logger) *State {
	if s != nil {
		return s
	}
	return New(st, log)
}
