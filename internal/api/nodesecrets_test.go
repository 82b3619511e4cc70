package api

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
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
		code, jr, body, keyPEM := joinAs(t, srv, ca, "/v1/cluster/join", tok.Token, name, nil)
		if code != http.StatusOK {
			t.Fatalf("join %s: %d %s", name, code, body)
		}
		cert, err := tls.X509KeyPair([]byte(jr.CertPEM), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return client.NewNode(srv.URL, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}})
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
