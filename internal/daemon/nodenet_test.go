package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

func TestPeersOfSkipsSelfAndIncompleteNodes(t *testing.T) {
	vtep := &model.VTEP{MAC: "02:00:00:00:00:01"}
	nodes := map[string]model.Node{
		"self":    {Name: "self", Subnet: "10.90.0.0/24", Address: "10.0.0.1", VTEP: vtep},
		"b":       {Name: "b", Subnet: "10.90.2.0/24", Address: "10.0.0.2", VTEP: vtep, Status: model.NodeDown},
		"a":       {Name: "a", Subnet: "10.90.1.0/24", Address: "10.0.0.3", VTEP: vtep, Status: model.NodeUnreachable},
		"novtep":  {Name: "novtep", Subnet: "10.90.3.0/24", Address: "10.0.0.4"},
		"nosub":   {Name: "nosub", Address: "10.0.0.5", VTEP: vtep},
		"badaddr": {Name: "badaddr", Subnet: "10.90.4.0/24", Address: "host.example", VTEP: vtep},
		"badmac":  {Name: "badmac", Subnet: "10.90.5.0/24", Address: "10.0.0.6", VTEP: &model.VTEP{MAC: "x"}},
	}
	peers := peersOf(nodes, "self")
	if len(peers) != 2 || peers[0].Name != "a" || peers[1].Name != "b" {
		t.Fatalf("peers = %v, want a and b (down and unreachable nodes keep their routes)", peers)
	}
}

func TestLazyNetWaitsBoundedThenFollowsSetOrFail(t *testing.T) {
	ctx := context.Background()
	l := newLazyNet(50 * time.Millisecond)
	if _, err := l.Attach(ctx, "x", nil); err == nil || !strings.Contains(err.Error(), "no subnet") {
		t.Fatalf("Attach before the network: %v", err)
	}
	l.fail(errors.New("plugins missing"))
	l.set(nil) // ignored after fail
	if _, _, err := l.Get(ctx, "x"); err == nil || !strings.Contains(err.Error(), "plugins missing") {
		t.Fatalf("Get after fail: %v", err)
	}
	l2 := newLazyNet(time.Minute)
	done := make(chan error, 1)
	go func() { done <- l2.Detach(ctx, "x") }()
	time.Sleep(20 * time.Millisecond)
	l2.set(fakeNet{})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Detach once set: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Detach still waiting after set")
	}
}

type fakeNet struct{ network.Node }

func (fakeNet) Detach(context.Context, string) error { return nil }

func TestWatchNodesIgnoresHeartbeats(t *testing.T) {
	st := bolttest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(n model.Node) {
		t.Helper()
		if _, err := store.Update(ctx, st, model.NodeKey(n.Name), func(cur *model.Node) error { *cur = n; return nil }); errors.Is(err, store.ErrNotFound) {
			_, err = store.PutJSON(ctx, st, model.NodeKey(n.Name), n, 0)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	put(model.Node{Name: "a"})
	views := make(chan map[string]model.Node, 10)
	go watchNodes(ctx, st, nil, func(m map[string]model.Node) { views <- m })
	next := func() map[string]model.Node {
		t.Helper()
		select {
		case m := <-views:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no view within 5s")
			return nil
		}
	}
	next() // the listing
	put(model.Node{Name: "a", LastHeartbeat: time.Now()})
	put(model.Node{Name: "a", Subnet: "10.90.0.0/24"})
	if m := next(); m["a"].Subnet != "10.90.0.0/24" {
		t.Fatalf("view after the subnet: %+v", m["a"])
	}
	select {
	case m := <-views:
		t.Fatalf("extra view for a heartbeat: %+v", m)
	default:
	}
}
