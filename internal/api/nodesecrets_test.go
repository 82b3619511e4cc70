package api

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// A node reads a secret's values only while it runs an instance that
// pulls its image with that secret; other nodes and the admin get 403.
func TestNodeReadsOnlyPullSecretsOfItsInstances(t *testing.T) {
	c, ca, srv := tlsServer(t)
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, "1h", "")
	if err != nil {
		t.Fatal(err)
	}
	nodeClient := func(name string) *client.Client {
		return client.NewNode(srv.URL, nodeTLS(t, srv, ca, tok.Token, name))
	}
	n1, n2 := client.NodeSecrets{C: nodeClient("n1")}, client.NodeSecrets{C: nodeClient("n2")}
	if _, err := c.PutSecret(ctx, "", "reg", map[string]string{"username": "u", "password": "p"}); err != nil {
		t.Fatal(err)
	}
	admin := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	defer admin.Close()
	put := func(key string, v any) {
		if _, err := store.PutJSON(ctx, admin, key, v, 0); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := n1.Get(ctx, model.DefaultNamespace, "reg"); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("no instance yet: %v", err)
	}
	put(model.RevisionKey(model.DefaultNamespace, "web", 1), model.Revision{Namespace: model.DefaultNamespace, App: "web", Number: 1,
		Spec: model.AppSpec{Name: "web", Image: "x", ImagePullSecret: "reg"}})
	put(model.InstanceKey(model.DefaultNamespace, "web", "web-1"), model.Instance{ID: "web-1", Namespace: model.DefaultNamespace,
		App: "web", Revision: 1, Node: "n1"})

	data, err := n1.Get(ctx, model.DefaultNamespace, "reg")
	if err != nil || data["username"] != "u" || data["password"] != "p" {
		t.Fatalf("node with an instance using the secret: %v %v", data, err)
	}
	if _, err := n2.Get(ctx, model.DefaultNamespace, "reg"); !isStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), "n2") {
		t.Fatalf("node without such an instance: %v", err)
	}
	if _, err := n1.Get(ctx, "other", "reg"); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("same name in another namespace: %v", err)
	}
	adminRead := client.NodeSecrets{C: c}
	if _, err := adminRead.Get(ctx, model.DefaultNamespace, "reg"); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("admin read values: %v", err)
	}
}

func isStatus(err error, code int) bool {
	e, ok := err.(*client.Error)
	return ok && e.Status == code
}

// nodeTLS joins node with token and returns its mTLS client config.
func nodeTLS(t *testing.T, srv *httptest.Server, ca *pki.CA, token, node string) *tls.Config {
	t.Helper()
	code, jr, body, keyPEM := joinAs(t, srv, ca, "/v1/cluster/join", token, node, nil)
	if code != http.StatusOK {
		t.Fatalf("join %s: %d %s", node, code, body)
	}
	cert, err := tls.X509KeyPair([]byte(jr.CertPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}
}

// A node reads the revisions of apps it runs an instance of, one key at
// a time; other apps' revisions and listing /revisions/ are 403.
func TestNodeReadsRevisionsOfItsAppsOnly(t *testing.T) {
	forEachTransport(t, testNodeReadsRevisionsOfItsAppsOnly)
}

func testNodeReadsRevisionsOfItsAppsOnly(t *testing.T, session bool) {
	ctx, ca, srv, tok := tokenServer(t)
	n1, n2 := agentStore(t, srv, ca, tok.Token, "n1", session), agentStore(t, srv, ca, tok.Token, "n2", session)
	admin := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	defer admin.Close()
	ns := model.DefaultNamespace
	for _, app := range []string{"web", "db"} {
		if _, err := store.PutJSON(ctx, admin, model.RevisionKey(ns, app, 1), model.Revision{Namespace: ns, App: app, Number: 1,
			Spec: model.AppSpec{Name: app, Image: "x", Env: map[string]string{"SECRET": app}}}, 0); err != nil {
			t.Fatal(err)
		}
	}
	inst := model.Instance{ID: "web-1", Namespace: ns, App: "web", Revision: 1, Node: "n1"}
	if _, err := store.PutJSON(ctx, admin, inst.Key(), inst, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Get(ctx, model.RevisionKey(ns, "web", 1)); err != nil {
		t.Fatalf("n1 reading the revision of its instance: %v", err)
	}
	for _, c := range []struct {
		s    *remote.Store
		key  string
		what string
	}{
		{n1, model.RevisionKey(ns, "db", 1), "n1 reading an app it runs nothing of"},
		{n2, model.RevisionKey(ns, "web", 1), "n2 reading an app whose instance is n1's"},
		{n1, "/revisions/default/web", "n1 reading a malformed revision key"},
	} {
		if _, err := c.s.Get(ctx, c.key); !remote.IsForbidden(err) {
			t.Errorf("%s: %v, want 403", c.what, err)
		}
	}
	if _, _, err := n1.List(ctx, model.PrefixRevisions); !remote.IsForbidden(err) {
		t.Errorf("n1 listing revisions: %v, want 403", err)
	}
	// Once the instance moves to n2, n2 may read it and n1 may not.
	inst.Node = "n2"
	if _, err := store.PutJSON(ctx, admin, inst.Key(), inst, 0); err == nil {
		t.Fatal("put without the current ModRev succeeded")
	}
	if _, err := store.Update(ctx, admin, inst.Key(), func(in *model.Instance) error { in.Node = "n2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Get(ctx, model.RevisionKey(ns, "web", 1)); err != nil {
		t.Errorf("n2 after the move: %v", err)
	}
	// The fan-out's index follows the store a moment behind: n1 may read
	// the spec of the app it ran until the index sees the move.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := n1.Get(ctx, model.RevisionKey(ns, "web", 1))
		if remote.IsForbidden(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 after the move: %v, want 403", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
