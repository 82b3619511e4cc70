package dns

import (
	"context"
	"log/slog"

	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/store"
)

// Source feeds the server: the state to answer from, then a new full
// state after every relevant change (apps, instances, nodes). It is the
// router's Source contract, so one implementation serves both; a source
// over the API can replace the store for a node without store access.
type Source interface {
	// Snapshots sends the current state and then a new one after every
	// change, until ctx ends (then the channel is closed). A slow reader
	// only sees the latest state.
	Snapshots(ctx context.Context) (<-chan table.Snapshot, error)
}

// NewStoreSource reads apps, instances and nodes from st: List, then
// Watch from the listed revision, listing again when a watch is lost
// (router.StoreSource).
func NewStoreSource(st store.Store, log *slog.Logger) Source {
	return router.NewStoreSource(st, log)
}
