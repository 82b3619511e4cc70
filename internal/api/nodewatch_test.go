package api

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// An agent's watch of /instances/ (served by the per-node fan-out) carries
// the changes of its own instances only: puts, and deletes of instances
// that were its; another node's and unplaced instances never show.
func TestNodeWatchSeesOnlyItsInstances(t *testing.T) {
	forEachTransport(t, testNodeWatchSeesOnlyItsInstances)
}

func testNodeWatchSeesOnlyItsInstances(t *testing.T, session bool) {
	ctx, ca, srv, tok := tokenServer(t)
	n1, n2 := agentStore(t, srv, ca, tok.Token, "n1", session), agentStore(t, srv, ca, tok.Token, "n2", session)
	admin := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	defer admin.Close()
	inst := func(id, node string) model.Instance {
		return model.Instance{ID: id, Namespace: model.DefaultNamespace, App: "web", Revision: 1, Node: node}
	}
	put := func(in model.Instance) {
		b, _ := json.Marshal(in)
		if _, err := admin.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(in.Key(), b)}}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(in model.Instance) {
		if _, err := admin.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(in.Key())}}); err != nil {
			t.Fatal(err)
		}
	}
	before := inst("web-0", "n1")
	put(before) // known to the fan-out only from its first List
	rev, err := n1.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := n1.Watch(ctx, model.PrefixInstances, rev)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := n2.Watch(ctx, model.PrefixInstances, rev)
	if err != nil {
		t.Fatal(err)
	}
	a, b, free := inst("web-1", "n1"), inst("web-2", "n2"), inst("web-3", "")
	put(free)
	put(b)
	put(a)
	del(free)
	del(b)
	del(before)
	type seen struct {
		typ store.EventType
		key string
	}
	read := func(ch <-chan store.Event, n int) []seen {
		var out []seen
		for len(out) < n {
			select {
			case ev := <-ch:
				out = append(out, seen{ev.Type, ev.KV.Key})
			case <-ctx.Done():
				t.Fatalf("got %v, waited for %d events", out, n)
			}
		}
		return out
	}
	want1 := []seen{{store.EventPut, a.Key()}, {store.EventDelete, before.Key()}}
	want2 := []seen{{store.EventPut, b.Key()}, {store.EventDelete, b.Key()}}
	for i, c := range []struct {
		ch   <-chan store.Event
		want []seen
	}{{w1, want1}, {w2, want2}} {
		got := read(c.ch, len(c.want))
		for j := range got {
			if got[j] != c.want[j] {
				t.Fatalf("n%d saw %v, want %v", i+1, got, c.want)
			}
		}
	}
	// Nothing else arrives: a last change of n2's shows no further n1 event.
	last := inst("web-4", "n2")
	put(last)
	read(w2, 1)
	select {
	case ev := <-w1:
		t.Fatalf("n1 saw %v %s", ev.Type, ev.KV.Key)
	case <-time.After(300 * time.Millisecond):
	}
	// A node's listing (served from the state view) holds its own
	// instances only, at a revision its watch resumes from.
	for name, c := range map[string]struct {
		st   *remote.Store
		want string
	}{"n1": {n1, a.Key()}, "n2": {n2, last.Key()}} {
		kvs, rev, err := c.st.List(ctx, model.PrefixInstances)
		if err != nil || len(kvs) != 1 || kvs[0].Key != c.want || rev < kvs[0].ModRev {
			t.Fatalf("%s lists %+v at %d (%v), want only %s", name, kvs, rev, err, c.want)
		}
	}
}

// agentStore joins node name with token and returns its store client,
// which makes HTTP requests or (session) calls over an agent session.
func agentStore(t *testing.T, srv *httptest.Server, ca *pki.CA, token, name string, session bool) *remote.Store {
	t.Helper()
	st := remote.New(remote.Options{Server: srv.URL, TLS: nodeTLS(t, srv, ca, token, name), Session: session})
	t.Cleanup(func() {
		if session && !st.UsesSession() {
			t.Errorf("%s's calls did not go over an agent session", name)
		}
		st.Close()
	})
	return st
}

// An agent resuming its watch from before what the fan-out holds is told
// to list again (compacted), not served by a watch of the whole store.
func TestNodeWatchTooOldIsCompacted(t *testing.T) {
	forEachTransport(t, testNodeWatchTooOldIsCompacted)
}

func testNodeWatchTooOldIsCompacted(t *testing.T, session bool) {
	ctx, ca, srv, tok := tokenServer(t)
	n1 := agentStore(t, srv, ca, tok.Token, "n1", session)
	rev, err := n1.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The first watch starts the fan-out at the current revision.
	if _, err := n1.Watch(ctx, model.PrefixInstances, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Watch(ctx, model.PrefixInstances, 1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch after revision 1: %v, want ErrCompacted", err)
	}
}

// forEachTransport runs test over both ways an agent reaches the server:
// HTTP requests and an agent session.
func forEachTransport(t *testing.T, test func(t *testing.T, session bool)) {
	t.Run("http", func(t *testing.T) { test(t, false) })
	t.Run("session", func(t *testing.T) { test(t, true) })
}
