package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/secrets"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// tlsServer serves the API with the cluster endpoints over TLS that
// verifies client certificates, as berth server does.
func tlsServer(t *testing.T) (*client.Client, *pki.CA, *httptest.Server) {
	t.Helper()
	return tlsServerWith(t, func(h http.Handler) http.Handler { return h })
}

// tlsServerWith is tlsServer with the API handler wrapped.
func tlsServerWith(t *testing.T, wrap func(http.Handler) http.Handler) (*client.Client, *pki.CA, *httptest.Server) {
	t.Helper()
	return tlsServerOpts(t, wrap, func(*Options) {})
}

// tlsServerOpts is tlsServerWith with the API's options amended by set.
func tlsServerOpts(t *testing.T, wrap func(http.Handler) http.Handler, set func(*Options)) (*client.Client, *pki.CA, *httptest.Server) {
	t.Helper()
	st := bolttest.Open(t)
	ca, cert := pkitest.New(t)
	box, err := secrets.NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Store: st, AdminToken: token, CA: ca, ClientCertTTL: time.Hour, Secrets: &secrets.Service{Store: st, Box: box}}
	set(&o)
	srv := httptest.NewUnstartedServer(wrap(New(o)))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, err := client.NewTLS(srv.URL, token, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, ca, srv
}

// tokenServer is tlsServer with a context that ends with the test (or
// after 30s) and a join token.
func tokenServer(t *testing.T) (context.Context, *pki.CA, *httptest.Server, model.CreatedJoinToken) {
	t.Helper()
	c, ca, srv := tlsServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	tok, err := c.CreateToken(ctx, "1h", "")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, ca, srv, tok
}

// joinAs posts a join (or, with cert, a renew) and returns the status,
// the answer and the key made for it.
func joinAs(t *testing.T, srv *httptest.Server, ca *pki.CA, path, tok, node string, cert *tls.Certificate) (int, model.JoinResponse, string, []byte) {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(node)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(model.JoinRequest{Token: tok, Node: node, CSRPEM: string(csrPEM)})
	hc := agentHTTP(ca, cert)
	resp, err := hc.Post(srv.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var jr model.JoinResponse
	_ = json.Unmarshal(body, &jr)
	return resp.StatusCode, jr, string(body), keyPEM
}

func agentHTTP(ca *pki.CA, cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestJoinRenewAndRevoke(t *testing.T) {
	c, ca, srv := tlsServer(t)
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, "1h", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "berth-join-"+ca.Fingerprint()+".") {
		t.Fatalf("token %s does not carry the CA fingerprint", tok.Token)
	}
	code, jr, body, keyPEM := joinAs(t, srv, ca, "/v1/cluster/join", tok.Token, "n1", nil)
	if code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	cert, err := tls.X509KeyPair([]byte(jr.CertPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hc := agentHTTP(ca, &cert)
	if code, body := get(t, hc, srv.URL+"/v1/store/kv?key=/nodes/n1"); code != http.StatusNotFound {
		t.Fatalf("own node with the agent certificate: %d %s", code, body)
	}
	if code, body := get(t, hc, srv.URL+"/v1/apps"); code != http.StatusForbidden {
		t.Fatalf("admin endpoint with an agent certificate: %d %s", code, body)
	}
	// Other nodes are readable (the overlay needs their subnets and
	// VTEPs); server-side keys are not.
	if code, body := get(t, hc, srv.URL+"/v1/store/kv?key=/nodes/n2"); code != http.StatusNotFound {
		t.Fatalf("another node with an agent certificate: %d %s", code, body)
	}
	if code, body := get(t, hc, srv.URL+"/v1/store/kv?key="+model.SubnetKey("10.90.0.0/24")); code != http.StatusForbidden {
		t.Fatalf("subnet allocation with an agent certificate: %d %s", code, body)
	}
	// Another agent may not take the name.
	if code, _, body, _ := joinAs(t, srv, ca, "/v1/cluster/join", tok.Token, "n1", nil); code != http.StatusConflict || !strings.Contains(body, "held by another agent") {
		t.Fatalf("duplicate name: %d %s", code, body)
	}
	// Renewal over mTLS gives a new certificate that works; the old
	// (other key) one is replaced.
	code, jr2, body, key2 := joinAs(t, srv, ca, "/v1/cluster/renew", "", "n1", &cert)
	if code != http.StatusOK {
		t.Fatalf("renew: %d %s", code, body)
	}
	cert2, err := tls.X509KeyPair([]byte(jr2.CertPEM), key2)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, agentHTTP(ca, &cert2), srv.URL+"/v1/store/kv?key=/nodes/n1"); code != http.StatusNotFound {
		t.Fatalf("renewed certificate: %d %s", code, body)
	}
	if code, _ := get(t, hc, srv.URL+"/v1/store/kv?key=/nodes/n1"); code != http.StatusUnauthorized {
		t.Fatalf("replaced certificate still accepted: %d", code)
	}
	// Renewing for another name is refused.
	if code, _, body, _ := joinAs(t, srv, ca, "/v1/cluster/renew", "", "n2", &cert2); code != http.StatusForbidden {
		t.Fatalf("renew as another node: %d %s", code, body)
	}
	// A revoked token is refused, and says so.
	if err := c.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if code, _, body, _ := joinAs(t, srv, ca, "/v1/cluster/join", tok.Token, "n3", nil); code != http.StatusUnauthorized || !strings.Contains(body, "token_revoked") {
		t.Fatalf("revoked: %d %s", code, body)
	}
	if code, _, body, _ := joinAs(t, srv, ca, "/v1/cluster/join", "berth-join-xyz", "n3", nil); code != http.StatusBadRequest || !strings.Contains(body, "token_malformed") {
		t.Fatalf("malformed: %d %s", code, body)
	}
}

// Agents joining at once with one token are each counted once, without
// racing writes of the token's record.
func TestConcurrentJoinsAreCountedOnce(t *testing.T) {
	c, ca, srv := tlsServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := c.CreateToken(ctx, "1h", "fleet")
	if err != nil {
		t.Fatal(err)
	}
	const agents = 40
	codes := make(chan int, agents)
	for i := range agents {
		go func() {
			_, csrPEM, err := pki.NewKeyAndCSR(fmt.Sprintf("n%02d", i))
			if err != nil {
				codes <- 0
				return
			}
			b, _ := json.Marshal(model.JoinRequest{Token: tok.Token, Node: fmt.Sprintf("n%02d", i), CSRPEM: string(csrPEM)})
			resp, err := agentHTTP(ca, nil).Post(srv.URL+"/v1/cluster/join", "application/json", bytes.NewReader(b))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range agents {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("a join answered %d", code)
		}
	}
	toks, err := c.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Uses != agents {
		t.Fatalf("tokens = %+v, %v; want one used %d times", toks, err, agents)
	}
}
