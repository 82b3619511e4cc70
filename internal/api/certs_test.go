package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testCert(t *testing.T, names ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func TestCerts(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	certPEM, keyPEM := testCert(t, "a.example.test", "*.example.test")
	_, otherKey := testCert(t, "b.example.test")

	_, err := c.PutCert(ctx, "site", certPEM, otherKey)
	if e := apiErr(t, err, http.StatusBadRequest); e.Fields[0].Field != "certPEM" || !strings.Contains(e.Message, "do not load together") {
		t.Fatalf("mismatched key: %+v", e)
	}
	_, err = c.PutCert(ctx, "Bad_Name", certPEM, keyPEM)
	if e := apiErr(t, err, http.StatusBadRequest); e.Fields[0].Field != "name" {
		t.Fatalf("bad name: %+v", e)
	}
	got, err := c.PutCert(ctx, "site", certPEM, keyPEM)
	if err != nil || got.KeyPEM != "" || strings.Join(got.DNSNames, ",") != "a.example.test,*.example.test" || got.NotAfter.IsZero() {
		t.Fatalf("put: %+v %v", got, err)
	}
	list, err := c.Certs(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "site" || list[0].KeyPEM != "" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := c.DeleteCert(ctx, "site"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, c.DeleteCert(ctx, "site"), http.StatusNotFound)
}

func TestRouteClaimConflictIs409(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	spec := func(name string) []byte {
		return []byte("name: " + name + "\nimage: berth-test/busybox:latest\nports: [{name: http, containerPort: 8080}]\nroutes: [{host: hello.example.test, port: http}]\n")
	}
	if _, err := c.Apply(ctx, "", spec("one")); err != nil {
		t.Fatal(err)
	}
	e := apiErr(t, func() error { _, err := c.Apply(ctx, "", spec("two")); return err }(), http.StatusConflict)
	if !strings.Contains(e.Message, `routed to app "one" in namespace "default"`) {
		t.Fatalf("message %q", e.Message)
	}
	_, err := c.Apply(ctx, "", []byte("name: three\nimage: berth-test/busybox:latest\nports: [{name: http, containerPort: 8080}]\nroutes: [{host: x.test, port: web}]\n"))
	if e := apiErr(t, err, http.StatusBadRequest); e.Fields[0].Field != "routes[0].port" || !strings.Contains(e.Fields[0].Message, `names no declared port "web"`) {
		t.Fatalf("bad port: %+v", e)
	}
}
