package remote_test

import (
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/remote"
	"github.com/berth-dev/berth/internal/store/storetest"
)

const history = 1000

// serve runs the API over a fresh bolt store and returns a remote store
// talking to it with the admin token.
func serve(t *testing.T) (*remote.Store, store.Store) {
	t.Helper()
	backing, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{HistoryRevisions: history})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Store: backing, AdminToken: "admin"}))
	rs := remote.New(remote.Options{Server: srv.URL, Token: "admin"})
	t.Cleanup(func() {
		rs.Close()
		srv.CloseClientConnections()
		srv.Close()
		backing.Close()
	})
	return rs, backing
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { s, _ := serve(t); return s }, storetest.WithCompaction(history))
}
