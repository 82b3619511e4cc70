package api

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// Agents learn the heartbeat interval from the answers to their writes:
// the base 2s in a small cluster, 3s once it has 3,000 nodes.
func TestAgentsArePacedByClusterSize(t *testing.T) {
	forEachTransport(t, testAgentsArePacedByClusterSize)
}

func testAgentsArePacedByClusterSize(t *testing.T, session bool) {
	ctx, ca, srv, tok := tokenServer(t)
	n1 := agentStore(t, srv, ca, tok.Token, "n1", session)
	admin := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	defer admin.Close()
	beat := func() time.Duration {
		t.Helper()
		if _, err := store.Update(ctx, n1, model.NodeKey("n1"), func(n *model.Node) error {
			n.Name, n.Status = "n1", model.NodeReady
			return nil
		}); err != nil && err != store.ErrNotFound {
			t.Fatal(err)
		}
		return n1.HeartbeatInterval()
	}
	b, _ := json.Marshal(model.Node{Name: "n1", Status: model.NodeReady})
	if _, err := admin.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(model.NodeKey("n1"), b)}}); err != nil {
		t.Fatal(err)
	}
	if got := beat(); got != model.BaseHeartbeat {
		t.Fatalf("one node: agent told %s, want %s", got, model.BaseHeartbeat)
	}
	var txn store.Txn
	for i := 1; i < 3000; i++ {
		name := fmt.Sprintf("sim-%04d", i)
		b, _ := json.Marshal(model.Node{Name: name, Status: model.NodeReady})
		txn.Ops = append(txn.Ops, store.Put(model.NodeKey(name), b))
	}
	if _, err := admin.Txn(ctx, txn); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for beat() != 3*time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("3,000 nodes: agent told %s, want 3s", n1.HeartbeatInterval())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
