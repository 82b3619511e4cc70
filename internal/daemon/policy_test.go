package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// TestIsolationFollowsTheStore: the node's table follows the store (an
// instance appears, a grant is added) and is removed at stop.
func TestIsolationFollowsTheStore(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for nftables")
		}
		t.Skip("needs root")
	}
	bridge := "berth-test-" + randSuffix(t)
	table := isolationTable(bridge)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", table).Run() })
	st := bolttest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(key string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(key, b)}}); err != nil {
			t.Fatal(err)
		}
	}
	app := model.App{Namespace: "a", Name: "x", Spec: model.AppSpec{Name: "x", Namespace: "a"}}
	put(model.AppKey("a", "x"), app)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stop := startIsolation(ctx, router.NewStoreSource(st, log), "n1",
		NativeOptions{Bridge: bridge, Subnet: netip.MustParsePrefix("10.254.7.0/24")}, IsolationOptions{}, log)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	listed := func() string {
		out, _ := exec.Command("nft", "list", "table", "inet", table).CombinedOutput()
		return string(out)
	}
	waitFor := func(what string, cond func(string) bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if cond(listed()) {
				return
			}
		}
		t.Fatalf("%s; table:\n%s", what, listed())
	}
	waitFor("the range of the node network", func(s string) bool { return strings.Contains(s, "10.254.7.0/24") })

	in := model.Instance{ID: "x-1", Namespace: "a", App: "x", Node: "n1",
		Status: model.InstanceStatus{State: model.StateRunning, IP: netip.MustParseAddr("10.254.7.5")}}
	put(in.Key(), in)
	waitFor("the instance as a local destination", func(s string) bool { return strings.Contains(s, "10.254.7.5 : jump to.a.x") })

	app.Spec.AllowFrom = []model.NetworkPeer{{Network: "b"}}
	put(model.AppKey("a", "x"), app)
	other := model.Instance{ID: "y-1", Namespace: "b", App: "y", Node: "n2",
		Status: model.InstanceStatus{State: model.StateRunning, IP: netip.MustParseAddr("10.254.8.5")}}
	put(other.Key(), other)
	waitFor("the grant", func(s string) bool { return strings.Contains(s, "ip saddr @net.b accept") })

	stop()
	stopped = true
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), table) {
		t.Fatalf("table %s left after stop: %v\n%s", table, err, out)
	}
}

func randSuffix(t *testing.T) string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
