package router

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// certIndex finds the certificate for a TLS ClientHello's server name:
// a route's pinned certificate (tls.secretName) for that host first, then
// a certificate naming the host exactly, then one with a matching
// wildcard name.
type certIndex struct {
	byName   map[string]*parsedCert // stored name → cert
	exact    map[string]*parsedCert // DNS name → cert
	wildcard map[string]*parsedCert // domain after "*." → cert
	pinned   map[string]string      // route host (maybe "*.d") → cert name
}

type parsedCert struct {
	sum  [32]byte
	cert *tls.Certificate
}

// buildCertIndex parses t's certificates, reusing unchanged ones from prev.
func buildCertIndex(t *table.Table, prev *certIndex, log *slog.Logger) *certIndex {
	ix := &certIndex{byName: map[string]*parsedCert{}, exact: map[string]*parsedCert{},
		wildcard: map[string]*parsedCert{}, pinned: map[string]string{}}
	for _, c := range t.Certs {
		sum := sha256.Sum256([]byte(c.CertPEM + "\x00" + c.KeyPEM))
		pc := prev.byName[c.Name]
		if pc == nil || pc.sum != sum {
			cert, err := ParseCertificate(c)
			if err != nil {
				log.Warn("router: skipping certificate", "name", c.Name, "err", err)
				continue
			}
			pc = &parsedCert{sum: sum, cert: cert}
		}
		ix.byName[c.Name] = pc
		for _, n := range pc.cert.Leaf.DNSNames {
			n = strings.ToLower(n)
			if d, ok := strings.CutPrefix(n, "*."); ok {
				if ix.wildcard[d] == nil {
					ix.wildcard[d] = pc
				}
			} else if ix.exact[n] == nil {
				ix.exact[n] = pc
			}
		}
	}
	for _, r := range t.Routes {
		if r.Spec.TLS != nil && r.Spec.TLS.SecretName != "" {
			ix.pinned[r.Host()] = r.Spec.TLS.SecretName
		}
	}
	return ix
}

// ParseCertificate checks that c's certificate and key belong together
// and returns them ready to serve.
func ParseCertificate(c model.Certificate) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", c.Name, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %q: %w", c.Name, err)
		}
	}
	return &cert, nil
}

func (ix *certIndex) lookup(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	parent := ""
	if i := strings.IndexByte(name, '.'); i >= 0 {
		parent = name[i+1:]
	}
	if pc := ix.byName[ix.pinned[name]]; pc != nil {
		return pc.cert
	}
	if pc := ix.exact[name]; pc != nil {
		return pc.cert
	}
	if pc := ix.wildcard[parent]; parent != "" && pc != nil {
		return pc.cert
	}
	// A wildcard route pinning a certificate covers its subdomains.
	for d := name; parent != ""; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
		if pc := ix.byName[ix.pinned["*."+d]]; pc != nil {
			return pc.cert
		}
	}
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *Router) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.certs.Load().lookup(hello.ServerName); c != nil {
		return c, nil
	}
	r.metrics.tlsNoCert()
	return nil, fmt.Errorf("berth router: no certificate for server name %q (add one with 'berth cert add')", hello.ServerName)
}
