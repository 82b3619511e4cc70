package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// rawSession asks srv to upgrade to an agent session with conf (a
// node's certificate, or none) and headers; it returns the answer and,
// for a 101, the connection to write frames on and a reader of frames.
func rawSession(t *testing.T, srv *httptest.Server, conf *tls.Config, header http.Header) (*http.Response, *tls.Conn, *bufio.Reader) {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+remote.SessionPath, nil)
	req.Header = header
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, conn, br
}

var upgrade = http.Header{"Connection": {"Upgrade"}, "Upgrade": {remote.SessionProtocol}}

// A session is the agent's: without the upgrade, with the admin's
// token or without any identity it is refused, and says why.
func TestSessionRefusals(t *testing.T) {
	_, ca, srv, tok := tokenServer(t)
	node := nodeTLS(t, srv, ca, tok.Token, "n1")
	anon := &tls.Config{RootCAs: ca.Pool()}
	admin := upgrade.Clone()
	admin.Set("Authorization", "Bearer "+token)
	for _, c := range []struct {
		name   string
		conf   *tls.Config
		header http.Header
		code   int
		says   string
	}{
		{"no upgrade", node, http.Header{}, http.StatusUpgradeRequired, remote.SessionProtocol},
		{"admin token", anon, admin, http.StatusBadRequest, "sessions are for agents"},
		{"no identity", anon, upgrade, http.StatusUnauthorized, "missing or invalid token"},
	} {
		resp, _, _ := rawSession(t, srv, c.conf, c.header)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, resp.StatusCode, b, c.code, c.says)
		}
	}
}

// Each frame is answered by ID; a refused or unknown request is a 4xx
// answer and the session goes on; a frame that is not JSON ends it.
func TestSessionFrames(t *testing.T) {
	_, ca, srv, tok := tokenServer(t)
	resp, conn, br := rawSession(t, srv, nodeTLS(t, srv, ca, tok.Token, "n1"), upgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get(model.HeaderHeartbeatInterval) == "" {
		t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
	}
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(conn, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	read := func() remote.Frame {
		t.Helper()
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var f remote.Frame
		if err := json.Unmarshal(line, &f); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return f
	}
	other, _ := json.Marshal(model.Node{Name: "n2"})
	for _, c := range []struct {
		frame string
		code  int
		says  string
	}{
		{`{"id":1,"op":"fly"}`, http.StatusBadRequest, `"fly" is not get`},
		{`{"id":2,"op":"watch","prefix":"/secrets/","after":0}`, http.StatusForbidden, "may not list or watch /secrets/"},
		{`{"id":3,"op":"txn","txn":{"ops":[{"type":"put","key":"/nodes/n2","value":"` + b64(other) + `"}]}}`, http.StatusForbidden, "another node's object"},
		{`{"id":4,"op":"get","key":"/nodes/n1"}`, http.StatusNotFound, "not found"},
		{`{"id":5,"op":"txn"}`, http.StatusBadRequest, "txn: missing"},
		{`{"id":6,"op":"rev"}`, http.StatusOK, ""},
	} {
		send(c.frame)
		f := read()
		var msg string
		if f.Error != nil {
			msg = f.Error.Message
		}
		if f.Status != c.code || !strings.Contains(msg, c.says) {
			t.Errorf("%s: answered %d %q, want %d saying %q", c.frame, f.Status, msg, c.code, c.says)
		}
		if c.code == http.StatusOK && f.Rev == 0 {
			t.Errorf("%s: no revision in %+v", c.frame, f)
		}
	}
	send(`{"id":7,`)
	if f := read(); f.Status != http.StatusBadRequest {
		t.Fatalf("broken frame: %+v", f)
	}
	if _, err := br.ReadBytes('\n'); err == nil {
		t.Fatal("the session goes on after a broken frame")
	}
}

func b64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

// A certificate replaced while its session is open is refused on the
// next call, as a request with it would be, and the session ends.
func TestSessionChecksTheCertificateOnEveryCall(t *testing.T) {
	ctx, ca, srv, tok := tokenServer(t)
	conf := nodeTLS(t, srv, ca, tok.Token, "n1")
	n1 := remote.New(remote.Options{Server: srv.URL, TLS: conf, Session: true})
	defer n1.Close()
	if _, err := n1.Rev(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, body, _ := joinAs(t, srv, ca, "/v1/cluster/renew", "", "n1", &conf.Certificates[0]); code != http.StatusOK {
		t.Fatalf("renew: %d %s", code, body)
	}
	var e *remote.Error
	if _, err := n1.Rev(ctx); !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.Contains(e.Message, "replaced") {
		t.Fatalf("a call with the replaced certificate: %v, want 401", err)
	}
}

// A watch outlives its session: when the session ends (here retired, as
// after a certificate renewal) it resumes on a new one without losing or
// repeating events.
func TestSessionWatchResumesOnANewSession(t *testing.T) {
	ctx, ca, srv, tok := tokenServer(t)
	n1 := agentStore(t, srv, ca, tok.Token, "n1", true)
	admin := adminStore(t, srv, ca)
	w := watchInstances(ctx, t, n1)
	put := func(id string) { putInstance(ctx, t, admin, id, "n1") }
	next := func(want string) {
		t.Helper()
		select {
		case ev := <-w:
			if !strings.HasSuffix(ev.KV.Key, "/"+want) {
				t.Fatalf("saw %s, want %s", ev.KV.Key, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", want)
		}
	}
	put("web-1")
	next("web-1")
	for i, id := range []string{"web-2", "web-3"} {
		n1.Reconnect()
		if i == 1 {
			put(id) // while the watch is between sessions
		} else if _, err := n1.Rev(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			put(id)
		}
		next(id)
	}
	select {
	case ev := <-w:
		t.Fatalf("a repeated or stray event: %s", ev.KV.Key)
	case <-time.After(300 * time.Millisecond):
	}
}

// adminStore is a remote store with the admin's token.
func adminStore(t *testing.T, srv *httptest.Server, ca *pki.CA) *remote.Store {
	st := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	t.Cleanup(func() { st.Close() })
	return st
}

// An agent whose server has no sessions (an older one: 404 on the
// upgrade) makes HTTP requests instead, watches included.
func TestSessionFallsBackToHTTP(t *testing.T) {
	c, ca, srv := tlsServerWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == remote.SessionPath {
				http.NotFound(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n1 := joinedSession(ctx, t, c, ca, srv, "n1")
	w := watchInstances(ctx, t, n1)
	in := putInstance(ctx, t, adminStore(t, srv, ca), "web-1", "n1")
	select {
	case ev := <-w:
		if ev.KV.Key != in.Key() {
			t.Fatalf("saw %s", ev.KV.Key)
		}
	case <-ctx.Done():
		t.Fatal("no event over HTTP")
	}
	if n1.UsesSession() {
		t.Fatal("a session without a server that has them")
	}
}

// watchInstances starts st's watch of /instances/ from now.
func watchInstances(ctx context.Context, t *testing.T, st *remote.Store) <-chan store.Event {
	t.Helper()
	rev, err := st.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.Watch(ctx, model.PrefixInstances, rev)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// putInstance writes a new instance id of app web assigned to node.
func putInstance(ctx context.Context, t *testing.T, admin store.Store, id, node string) model.Instance {
	t.Helper()
	in := model.Instance{ID: id, Namespace: model.DefaultNamespace, App: "web", Revision: 1, Node: node}
	if _, err := store.PutJSON(ctx, admin, in.Key(), in, 0); err != nil {
		t.Fatal(err)
	}
	return in
}

// A heartbeat that changes nothing goes alone over the session: the
// server keeps it in memory while the node is at the agent's revision,
// and answers a conflict once the node changed (the agent then writes
// it), on another node's key 403.
func TestSessionBeat(t *testing.T) {
	live := nodes.NewLiveness()
	c, ca, srv := tlsServerOpts(t, func(h http.Handler) http.Handler { return h }, func(o *Options) { o.Liveness = live })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n1 := joinedSession(ctx, t, c, ca, srv, "n1")
	key := model.NodeKey("n1")
	if err := n1.Beat(ctx, key, 1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("beat before the node exists: %v, want a conflict", err)
	}
	rev, err := store.PutJSON(ctx, n1, key, model.Node{Name: "n1", Status: model.NodeReady}, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := live.Last("n1", time.Time{})
	if err := n1.Beat(ctx, key, rev); err != nil {
		t.Fatalf("beat at the node's revision: %v", err)
	}
	if !n1.UsesSession() || !live.Last("n1", time.Time{}).After(before) {
		t.Fatalf("the beat was not kept (session %v)", n1.UsesSession())
	}
	if kv, err := n1.Get(ctx, key); err != nil || kv.ModRev != rev {
		t.Fatalf("a beat wrote the node: %+v %v", kv, err)
	}
	if err := n1.Beat(ctx, key, rev-1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("beat at an old revision: %v, want a conflict", err)
	}
	var e *remote.Error
	if err := n1.Beat(ctx, model.NodeKey("n2"), rev); !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("beat for another node: %v, want 403", err)
	}
}

// joinedSession joins node to srv with a new token and returns its store,
// set to use an agent session.
func joinedSession(ctx context.Context, t *testing.T, c *client.Client, ca *pki.CA, srv *httptest.Server, node string) *remote.Store {
	t.Helper()
	tok, err := c.CreateToken(ctx, "1h", "")
	if err != nil {
		t.Fatal(err)
	}
	st := remote.New(remote.Options{Server: srv.URL, TLS: nodeTLS(t, srv, ca, tok.Token, node), Session: true})
	t.Cleanup(func() { st.Close() })
	return st
}
