package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCAIsKeptAndSignsClientsWithTheNodeName(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, caKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil || again.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("reloaded CA differs: %v", err)
	}
	srv, err := ca.ServerCert(dir, []string{"127.0.0.1", "berth.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(srv.Certificate[0])
	for _, h := range []string{"127.0.0.1", "berth.example"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: h}); err != nil {
			t.Fatalf("server certificate for %s: %v", h, err)
		}
	}
	_, csr, err := NewKeyAndCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	_, cert, err := ca.SignClient(csr, "n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "n1" {
		t.Fatalf("CN %q", cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestJoinTokenFormat(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	tok := NewJoinToken(fp)
	got, err := ParseJoinToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if tok.SecretHash() == tok.Secret || len(tok.SecretHash()) != 64 {
		t.Fatal("secret hash is not a SHA-256")
	}
	for _, bad := range []string{"", "berth-join-", "berth-join-" + fp + "." + tok.ID, "x" + tok.String(),
		"berth-join-" + fp + "." + tok.ID + "." + strings.ToUpper(tok.Secret)} {
		if _, err := ParseJoinToken(bad); err != ErrMalformedToken {
			t.Errorf("%q: %v, want malformed", bad, err)
		}
	}
}
