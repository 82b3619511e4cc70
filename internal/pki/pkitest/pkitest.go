// Package pkitest makes a cluster CA and a server certificate for tests.
package pkitest

import (
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/pki"
)

// New creates a CA in a temporary directory and a server certificate it
// signed for 127.0.0.1.
func New(t testing.TB) (*pki.CA, tls.Certificate) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return ca, cert
}
