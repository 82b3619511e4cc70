package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/mock"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
	"github.com/berth-dev/berth/internal/store/remote"
)

// counting counts the reads, writes and conflicts of keys under a prefix
// made through a store.
type counting struct {
	store.Store
	prefix                string
	gets, txns, conflicts atomic.Int64
}

func (c *counting) Get(ctx context.Context, key string) (store.KV, error) {
	if strings.HasPrefix(key, c.prefix) {
		c.gets.Add(1)
	}
	return c.Store.Get(ctx, key)
}

func (c *counting) Txn(ctx context.Context, t store.Txn) (int64, error) {
	counted := len(t.Compares) > 0 && strings.HasPrefix(t.Compares[0].Key, c.prefix)
	if counted {
		c.txns.Add(1) // before: a reader that sees the write sees it counted
	}
	rev, err := c.Store.Txn(ctx, t)
	if counted && errors.Is(err, store.ErrConflict) {
		c.conflicts.Add(1)
	}
	return rev, err
}

// calls returns and resets the counts.
func (c *counting) calls() (gets, txns, conflicts int64) {
	return c.gets.Swap(0), c.txns.Swap(0), c.conflicts.Swap(0)
}

// beatsAreOneWrite writes n heartbeats of a, each after another write
// (an event) has moved the store's revision, and fails unless each beat
// was one write.
func beatsAreOneWrite(t *testing.T, a *Agent, b *nodeBeat, s *counting, n int) {
	t.Helper()
	rec := events.NewRecorder(s, nil)
	s.calls()
	for i := range n {
		rec.Record(context.Background(), model.Event{Reason: "Test", Node: "n1"})
		if err := a.beat(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if gets, txns, conflicts := s.calls(); gets != 0 || txns != 1 || conflicts != 0 {
			t.Fatalf("beat %d: %d reads, %d writes, %d conflicts; want one write", i, gets, txns, conflicts)
		}
	}
}

func registered(t *testing.T, s store.Store) *Agent {
	t.Helper()
	a := New(Options{Store: s, Drivers: map[string]driver.Driver{"mock": mock.New(mock.Options{Node: "n1", Images: []string{image}})},
		NodeName: "n1", SkipPortScan: true})
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestHeartbeatOnEmbeddedStore: the embedded store writes every beat, so
// the first beat after one that changed nothing else conflicts once (the
// guess that it was dropped is wrong); from then on a beat is one write,
// through an operator's change too.
func TestHeartbeatOnEmbeddedStore(t *testing.T) {
	e := newEnv(t)
	s := &counting{Store: e.store, prefix: model.PrefixNodes}
	a := registered(t, s)
	ctx := context.Background()
	var b nodeBeat
	for range 2 {
		if err := a.beat(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	if gets, txns, conflicts := s.calls(); gets != 3 || txns != 4 || conflicts != 1 {
		t.Fatalf("first two beats: %d reads, %d writes, %d conflicts; want 3, 4 (with register's), 1", gets, txns, conflicts)
	}
	beatsAreOneWrite(t, a, &b, s, 3)

	key := model.NodeKey("n1")
	if _, err := store.Update(ctx, e.store, key, func(n *model.Node) error { n.Labels = map[string]string{"disk": "ssd"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.beat(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if gets, txns, conflicts := s.calls(); gets != 1 || txns != 2 || conflicts != 1 {
		t.Fatalf("beat after a label: %d reads, %d writes, %d conflicts; want 1, 2, 1", gets, txns, conflicts)
	}
	beatsAreOneWrite(t, a, &b, s, 3)
	o, err := store.GetJSON[model.Node](ctx, e.store, key)
	if err != nil || o.Value.Labels["disk"] != "ssd" || !o.Value.LastHeartbeat.Equal(b.known.Value.LastHeartbeat) {
		t.Fatalf("stored %+v (%v), want the label and the last beat", o.Value, err)
	}
}

// TestHeartbeatThroughServer: the API server keeps a beat that changes
// nothing else in memory and writes nothing, so the node keeps its
// ModRev and the next beat, guarded by it, does not conflict; a beat that
// changes the node is written, and the beats after it are one write too.
func TestHeartbeatThroughServer(t *testing.T) {
	st, live := nodeStore(t, "n1", false)
	s := &counting{Store: st, prefix: model.PrefixNodes}
	a := registered(t, s)
	ctx := context.Background()
	var b nodeBeat
	if err := a.beat(ctx, &b); err != nil {
		t.Fatal(err)
	}
	rev := b.known.ModRev
	beatsAreOneWrite(t, a, &b, s, 3)
	first := live.Last("n1", time.Time{})
	beatsAreOneWrite(t, a, &b, s, 1)
	if o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n1")); err != nil || o.ModRev != rev || b.known.ModRev != rev {
		t.Fatalf("node at %d (%v), agent knows %d; want both still %d", o.ModRev, err, b.known.ModRev, rev)
	}
	if !live.Last("n1", time.Time{}).After(first) {
		t.Fatal("the server did not take the beat")
	}

	a.o.SkipPortScan, a.o.PortRange = false, [2]int{1, 65535} // ports in use change the node
	beatsAreOneWrite(t, a, &b, s, 1)
	if b.known.ModRev == rev || len(b.known.Value.PortsInUse) == 0 {
		t.Fatalf("a beat with ports in use was not written: %+v", b.known)
	}
	a.o.PortRange = [2]int{1, 1}
	beatsAreOneWrite(t, a, &b, s, 1)
	a.o.SkipPortScan = true
	beatsAreOneWrite(t, a, &b, s, 3)
}

// countingBeats is counting for a store that takes heartbeats alone.
type countingBeats struct {
	*counting
	beats atomic.Int64
}

func (c *countingBeats) Beat(ctx context.Context, key string, modRev int64) error {
	c.beats.Add(1)
	return c.Store.(beater).Beat(ctx, key, modRev)
}

// TestHeartbeatAloneOverSession: over an agent session a beat that
// changes nothing else is sent without the node object and writes
// nothing; once the node changed (an operator's label) the beat
// conflicts, is written, and the beats after it go alone again.
func TestHeartbeatAloneOverSession(t *testing.T) {
	st, live := nodeStore(t, "n1", true)
	s := &countingBeats{counting: &counting{Store: st, prefix: model.PrefixNodes}}
	a := registered(t, s)
	ctx := context.Background()
	var b nodeBeat
	if err := a.beat(ctx, &b); err != nil { // knows the node's revision from here on
		t.Fatal(err)
	}
	rev := b.known.ModRev
	alone := func(n int) {
		t.Helper()
		s.calls()
		s.beats.Store(0)
		for range n {
			before := live.Last("n1", time.Time{})
			if err := a.beat(ctx, &b); err != nil {
				t.Fatal(err)
			}
			if !live.Last("n1", time.Time{}).After(before) {
				t.Fatal("the server did not take the beat")
			}
		}
		if gets, txns, _ := s.calls(); gets != 0 || txns != 0 || s.beats.Load() != int64(n) {
			t.Fatalf("%d beats: %d reads, %d writes, %d sent alone; want all alone", n, gets, txns, s.beats.Load())
		}
	}
	alone(3)
	if o, err := store.GetJSON[model.Node](ctx, st, model.NodeKey("n1")); err != nil || o.ModRev != rev || !st.UsesSession() {
		t.Fatalf("node at %d (%v, session %v), want still %d", o.ModRev, err, st.UsesSession(), rev)
	}
	if _, err := store.Update(ctx, st, model.NodeKey("n1"), func(n *model.Node) error { n.Labels = map[string]string{"disk": "ssd"}; return nil }); err != nil {
		t.Fatal(err)
	}
	s.calls()
	if err := a.beat(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if gets, txns, conflicts := s.calls(); gets != 1 || txns != 2 || conflicts != 1 {
		t.Fatalf("beat after a label: %d reads, %d writes, %d conflicts; want 1, 2, 1", gets, txns, conflicts)
	}
	alone(2)
}

// nodeStore serves an API server (with in-memory liveness) on a bolt
// store and returns the store as node n1's agent sees it (over an agent
// session or HTTP requests), and the server's liveness table.
func nodeStore(t *testing.T, node string, session bool) (*remote.Store, *nodes.Liveness) {
	t.Helper()
	st := bolttest.Open(t)
	ca, cert := pkitest.New(t)
	const token = "admin-token"
	live := nodes.NewLiveness()
	srv := httptest.NewUnstartedServer(api.New(api.Options{Store: st, AdminToken: token, CA: ca, ClientCertTTL: time.Hour, Liveness: live}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	admin, err := client.NewTLS(srv.URL, token, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(context.Background(), "1h", "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(node)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(model.JoinRequest{Token: tok.Token, Node: node, CSRPEM: string(csrPEM)})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(srv.URL+"/v1/cluster/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jr model.JoinResponse
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %d %v", resp.StatusCode, err)
	}
	pair, err := tls.X509KeyPair([]byte(jr.CertPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	rs := remote.New(remote.Options{Server: srv.URL, TLS: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}}, Session: session})
	t.Cleanup(func() { rs.Close() })
	return rs, live
}

// The server may slow an agent's heartbeat down, never speed it up past
// what the agent was configured with.
func TestPaced(t *testing.T) {
	for _, c := range []struct{ configured, server, want time.Duration }{
		{2 * time.Second, 0, 2 * time.Second},                             // not told yet
		{2 * time.Second, 2 * time.Second, 2 * time.Second},               // small cluster
		{500 * time.Millisecond, 2 * time.Second, 500 * time.Millisecond}, // a test's fast beat stays
		{2 * time.Second, 5 * time.Second, 5 * time.Second},               // 5,000 nodes
		{10 * time.Second, 5 * time.Second, 10 * time.Second},
	} {
		if got := paced(c.configured, c.server); got != c.want {
			t.Errorf("paced(%s, %s) = %s, want %s", c.configured, c.server, got, c.want)
		}
	}
}
