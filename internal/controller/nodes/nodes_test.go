package nodes

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
)

func TestSilentNodesGoDownAfterGrace(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	for name, hb := range map[string]time.Time{"fresh": t0, "silent": t0.Add(-time.Hour)} {
		n := model.Node{Name: name, Status: model.NodeReady, LastHeartbeat: hb}
		if _, err := store.PutJSON(ctx, st, model.NodeKey(name), n, 0); err != nil {
			t.Fatal(err)
		}
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil), Grace: 30 * time.Second, Now: func() time.Time { return now }})
	c.started = t0
	status := func(name string) string {
		o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey(name))
		if err != nil {
			t.Fatal(err)
		}
		return o.Value.Status
	}

	// Within the controller's own start-up grace nothing goes down, even a
	// node whose stored heartbeat is an hour old.
	now = t0.Add(10 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if status("silent") != model.NodeReady {
		t.Fatal("node marked down during the start-up grace")
	}

	now = t0.Add(31 * time.Second)
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if status("silent") != model.NodeDown || status("fresh") != model.NodeDown {
		t.Fatalf("after grace: silent=%s fresh=%s, both silent for over 30s", status("silent"), status("fresh"))
	}
	evs, _, err := events.List(ctx, st, events.Filter{}, 0)
	if err != nil || len(evs) != 2 || evs[0].Reason != "NodeDown" {
		t.Fatalf("events %+v %v", evs, err)
	}
}
