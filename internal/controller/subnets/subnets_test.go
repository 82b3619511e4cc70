package subnets

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

func TestParsePoolErrors(t *testing.T) {
	for _, c := range []struct {
		cidr string
		size int
		want string
	}{
		{"10.90.0.0", 24, "not a CIDR"},
		{"fd00::/48", 64, "IPv4"},
		{"10.90.1.0/16", 24, "host bits"},
		{"10.0.0.0/4", 24, "shorter than /8"},
		{"10.90.0.0/16", 12, "node subnet size 12"},
		{"10.90.0.0/16", 30, "node subnet size 30"},
	} {
		_, err := ParsePool(c.cidr, c.size)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("ParsePool(%s, %d) = %v, want %q", c.cidr, c.size, err, c.want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestPoolNextSkipsUsedAndExhausts(t *testing.T) {
	p, err := ParsePool("10.90.0.0/22", 24)
	if err != nil {
		t.Fatal(err)
	}
	var used []netip.Prefix
	want := []string{"10.90.0.0/24", "10.90.1.0/24", "10.90.2.0/24", "10.90.3.0/24"}
	for _, w := range want {
		s, err := p.Next(used)
		if err != nil || s.String() != w {
			t.Fatalf("Next = %s %v, want %s", s, err, w)
		}
		used = append(used, s)
	}
	if _, err := p.Next(used); err == nil || !contains(err.Error(), "exhausted") {
		t.Fatalf("exhausted pool: err = %v", err)
	}
	// An allocation of another size (pool resized) blocks what it overlaps.
	s, err := p.Next([]netip.Prefix{netip.MustParsePrefix("10.90.0.0/23")})
	if err != nil || s.String() != "10.90.2.0/24" {
		t.Fatalf("Next past a /23 = %s %v", s, err)
	}
}

func openStore(t *testing.T) store.Store {
	st := bolttest.Open(t)
	return st
}

func putNode(t *testing.T, st store.Store, n model.Node) {
	t.Helper()
	if _, err := store.PutJSON(context.Background(), st, model.NodeKey(n.Name), n, 0); err != nil {
		t.Fatal(err)
	}
}

// settle reconciles until a pass needs no retry (bounded).
func settle(t *testing.T, c *Controller) {
	t.Helper()
	for range 20 {
		again, err := c.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !again {
			return
		}
	}
	t.Fatal("reconcile did not settle in 20 passes")
}

func subnetsOf(t *testing.T, st store.Store) map[string]string {
	t.Helper()
	nodes, _, err := store.ListJSON[model.Node](context.Background(), st, model.PrefixNodes)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		out[n.Value.Name] = n.Value.Subnet
	}
	return out
}

func TestControllerAllocatesKeepsAndReleases(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	pool, _ := ParsePool("10.90.0.0/23", 24)
	c := New(Options{Store: st, Pool: pool})
	putNode(t, st, model.Node{Name: "a"})
	putNode(t, st, model.Node{Name: "b"})
	putNode(t, st, model.Node{Name: "c"})
	settle(t, c)
	got := subnetsOf(t, st)
	if got["a"] != "10.90.0.0/24" || got["b"] != "10.90.1.0/24" || got["c"] != "" {
		t.Fatalf("subnets = %v (c: pool of two is exhausted)", got)
	}
	// The agent rewrites its node without the field (it is server-owned):
	// the same subnet comes back.
	if _, err := store.Update(ctx, st, model.NodeKey("a"), func(n *model.Node) error { n.Subnet = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if got := subnetsOf(t, st); got["a"] != "10.90.0.0/24" {
		t.Fatalf("after restart a = %s", got["a"])
	}
	// node rm a: its subnet is released and goes to c.
	if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(model.NodeKey("a"))}}); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	settle(t, c)
	got = subnetsOf(t, st)
	if got["c"] != "10.90.0.0/24" || got["b"] != "10.90.1.0/24" {
		t.Fatalf("after rm a: %v", got)
	}
	kvs, _, _ := st.List(ctx, model.PrefixSubnets)
	if len(kvs) != 2 {
		t.Fatalf("allocations = %d, want 2", len(kvs))
	}
}

func TestConcurrentControllersNeverShareASubnet(t *testing.T) {
	st := openStore(t)
	pool, _ := ParsePool("10.90.0.0/16", 24)
	const nodes = 30
	var wg sync.WaitGroup
	// Nodes register while two controllers (e.g. a restart overlap) race.
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := New(Options{Store: st, Pool: pool})
			for i := range nodes {
				if i%2 == w {
					putNode(t, st, model.Node{Name: fmt.Sprintf("n%02d", i)})
				}
				if _, err := c.Reconcile(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	settle(t, New(Options{Store: st, Pool: pool}))
	seen := map[string]string{}
	for name, s := range subnetsOf(t, st) {
		if s == "" {
			t.Errorf("node %s has no subnet", name)
		}
		if other, dup := seen[s]; dup {
			t.Errorf("subnet %s given to %s and %s", s, other, name)
		}
		seen[s] = name
	}
	kvs, _, _ := st.List(context.Background(), model.PrefixSubnets)
	if len(kvs) != nodes {
		t.Errorf("allocations = %d, want %d", len(kvs), nodes)
	}
}

func TestReserveThenRegister(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	pool, _ := ParsePool("10.90.0.0/16", 24)
	putNode(t, st, model.Node{Name: "other"})
	c := New(Options{Store: st, Pool: pool, Keep: []string{"local"}})
	settle(t, c)
	s, err := Reserve(ctx, st, pool, "local")
	if err != nil || s.String() != "10.90.1.0/24" {
		t.Fatalf("Reserve = %s %v", s, err)
	}
	settle(t, c) // kept although node "local" is not registered yet
	if again, err := Reserve(ctx, st, pool, "local"); err != nil || again != s {
		t.Fatalf("second Reserve = %s %v", again, err)
	}
	putNode(t, st, model.Node{Name: "local"})
	settle(t, c)
	if got := subnetsOf(t, st); got["local"] != s.String() {
		t.Fatalf("local node subnet = %q, want %s", got["local"], s)
	}
}

// A node holding two allocations (an older server raced) keeps the older
// one and the other is freed.
func TestSecondAllocationOfANodeIsFreed(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	pool, _ := ParsePool("10.90.0.0/16", 24)
	for _, s := range []string{"10.90.5.0/24", "10.90.7.0/24"} {
		if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(model.SubnetKey(s), []byte("n"))}}); err != nil {
			t.Fatal(err)
		}
	}
	putNode(t, st, model.Node{Name: "n", Subnet: "10.90.7.0/24"})
	settle(t, New(Options{Store: st, Pool: pool}))
	if got := subnetsOf(t, st)["n"]; got != "10.90.5.0/24" {
		t.Fatalf("node subnet %q, want the older allocation 10.90.5.0/24", got)
	}
	kvs, _, _ := st.List(ctx, model.PrefixSubnets)
	if len(kvs) != 1 || kvs[0].Key != model.SubnetKey("10.90.5.0/24") {
		t.Fatalf("allocations %v, want only 10.90.5.0/24", kvs)
	}
}

func TestAllocatorHandsOutWhatNextWould(t *testing.T) {
	p, _ := ParsePool("10.90.0.0/20", 24)
	used := []netip.Prefix{netip.MustParsePrefix("10.90.1.0/24"), netip.MustParsePrefix("10.90.4.0/23")}
	a := p.Allocator(used)
	for {
		want, werr := p.Next(used)
		got, gerr := a.Next()
		if got != want || (werr == nil) != (gerr == nil) {
			t.Fatalf("Allocator.Next = %s %v, Pool.Next = %s %v", got, gerr, want, werr)
		}
		if werr != nil {
			return
		}
		used = append(used, got)
	}
}

// A fleet that joined at once gets its subnets in one pass, each its own,
// with the allocation keys to match.
func TestControllerAllocatesAFleetInOnePass(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	pool, _ := ParsePool("10.0.0.0/8", 24)
	c := New(Options{Store: st, Pool: pool})
	var txn store.Txn
	for i := range 500 {
		b := fmt.Appendf(nil, `{"name":"n%03d"}`, i)
		txn.Ops = append(txn.Ops, store.Put(model.NodeKey(fmt.Sprintf("n%03d", i)), b))
	}
	if _, err := st.Txn(ctx, txn); err != nil {
		t.Fatal(err)
	}
	if again, err := c.Reconcile(ctx); err != nil || again {
		t.Fatalf("Reconcile = %v, %v; want one pass to do it all", again, err)
	}
	seen := map[string]string{}
	for node, s := range subnetsOf(t, st) {
		if s == "" || seen[s] != "" {
			t.Fatalf("node %s: subnet %q (also %s)", node, s, seen[s])
		}
		seen[s] = node
	}
	kvs, _, _ := st.List(ctx, model.PrefixSubnets)
	if len(kvs) != 500 || len(seen) != 500 {
		t.Fatalf("%d allocations for %d nodes, want 500", len(kvs), len(seen))
	}
	for _, kv := range kvs {
		cidr := strings.Replace(strings.TrimPrefix(kv.Key, model.PrefixSubnets), "-", "/", 1)
		if seen[cidr] != string(kv.Value) {
			t.Fatalf("allocation %s → %s, but that node has %q", cidr, kv.Value, cidr)
		}
	}
}
