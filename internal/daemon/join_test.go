package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/pki/pkitest"
)

// TestJoinAndRenewKeepNoConnection: join and renew are one call each;
// the agent keeps no idle connection to the server after them (a
// server with thousands of agents would hold one each).
func TestJoinAndRenewKeepNoConnection(t *testing.T) {
	ca, cert := pkitest.New(t)
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw) // as the server sends it: the agent pins the CA
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req model.JoinRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		certPEM, _, err := ca.SignClient([]byte(req.CSRPEM), req.Node, time.Hour)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(model.JoinResponse{CertPEM: string(certPEM), CAPEM: string(ca.CertPEM)})
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		open[c] = s != http.StateClosed && s != http.StateHijacked
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()
	openConns := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range open {
			if o {
				n++
			}
		}
		return n
	}
	expectNone := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for openConns() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %d connections still open", what, openConns())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	id := &identity{dir: filepath.Join(t.TempDir(), "agent"), node: "n1", server: srv.URL}
	ctx := context.Background()
	if err := id.join(ctx, pki.NewJoinToken(ca.Fingerprint()).String()); err != nil {
		t.Fatal(err)
	}
	expectNone("join")
	if err := id.renew(ctx); err != nil {
		t.Fatal(err)
	}
	expectNone("renew")
}
