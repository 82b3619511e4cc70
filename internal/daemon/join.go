package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
)

// identity is an agent's credentials: the cluster CA and its client
// certificate, swapped atomically on renewal.
type identity struct {
	dir    string
	node   string
	server string
	ca     *x509.CertPool
	cert   atomic.Pointer[tls.Certificate]
	// issued is when the current certificate was received (the server
	// backdates NotBefore for clock skew, so that cannot tell).
	issued atomic.Pointer[time.Time]
	// skew shifts the agent's clock for TLS (tests: --clock-skew).
	skew time.Duration
}

func (id *identity) paths() (ca, key, cert string) {
	return filepath.Join(id.dir, "ca.crt"), filepath.Join(id.dir, "node.key"), filepath.Join(id.dir, "node.crt")
}

// tlsConfig verifies the server against the CA and presents the current
// client certificate.
func (id *identity) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: id.ca, MinVersion: tls.VersionTLS12, Time: func() time.Time { return time.Now().Add(id.skew) },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.cert.Load(), nil }}
}

// loadIdentity reads saved credentials; ok is false when there are none
// usable for node (missing, another node's, expired).
func loadIdentity(dir, node, server string) (*identity, bool) {
	id := &identity{dir: dir, node: node, server: server}
	caPath, keyPath, certPath := id.paths()
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return id, false
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return id, false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.Subject.CommonName != node || time.Now().After(leaf.NotAfter) {
		return id, false
	}
	pair.Leaf = leaf
	id.ca = x509.NewCertPool()
	id.ca.AppendCertsFromPEM(caPEM)
	id.cert.Store(&pair)
	issued := leaf.NotBefore
	if st, err := os.Stat(certPath); err == nil && st.ModTime().After(issued) {
		issued = st.ModTime()
	}
	id.issued.Store(&issued)
	return id, true
}

// join trades a join token for a client certificate. The server is
// trusted only if it presents the CA whose fingerprint the token carries
// and a certificate that CA signed for the host dialled.
func (id *identity) join(ctx context.Context, token string) error {
	tok, err := pki.ParseJoinToken(token)
	if err != nil {
		return err
	}
	u, err := url.Parse(id.server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--server must be https://HOST:PORT, got %q", id.server)
	}
	host := u.Hostname()
	var pinned *x509.Certificate
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // verified below against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates {
				if pki.Fingerprint(c) == tok.CAFingerprint {
					pinned = c
				}
			}
			if pinned == nil {
				return fmt.Errorf("the server at %s does not present the CA the join token names (fingerprint %s…): wrong server, or a token of another cluster", u.Host, tok.CAFingerprint[:16])
			}
			pool := x509.NewCertPool()
			pool.AddCert(pinned)
			inter := x509.NewCertPool()
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: host})
			if err != nil {
				return fmt.Errorf("the server's certificate does not verify against the pinned CA for %s: %w (start the server with --advertise %s)", host, err, host)
			}
			return nil
		}}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(id.node)
	if err != nil {
		return err
	}
	var resp model.JoinResponse
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}}
	defer hc.CloseIdleConnections() // one call: keep no connection open to the server
	if err := post(ctx, hc, id.server+"/v1/cluster/join", model.JoinRequest{Token: token, Node: id.node, CSRPEM: string(csrPEM)}, &resp); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return id.save(keyPEM, []byte(resp.CertPEM), []byte(resp.CAPEM))
}

// renew asks for a new certificate over mutual TLS with the current one.
func (id *identity) renew(ctx context.Context) error {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(id.node)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: id.tlsConfig()}}
	defer hc.CloseIdleConnections() // one call: keep no connection open to the server
	var resp model.JoinResponse
	if err := post(ctx, hc, id.server+"/v1/cluster/renew", model.JoinRequest{Node: id.node, CSRPEM: string(csrPEM)}, &resp); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	return id.save(keyPEM, []byte(resp.CertPEM), []byte(resp.CAPEM))
}

// renewLoop renews the certificate at two thirds of its lifetime,
// retrying every 30s while the server is away, and calls renewed after
// each renewal.
func (id *identity) renewLoop(ctx context.Context, log *slog.Logger, renewed func()) {
	for {
		leaf, issued := id.cert.Load().Leaf, *id.issued.Load()
		wait := time.Until(issued.Add(leaf.NotAfter.Sub(issued) * 2 / 3))
		if !ctxsleep.Sleep(ctx, wait) {
			return
		}
		for {
			err := id.renew(ctx)
			if err == nil {
				log.Info("certificate renewed", "expires", id.cert.Load().Leaf.NotAfter)
				renewed()
				break
			}
			log.Warn("certificate renewal failed; retrying", "err", err, "expires", leaf.NotAfter)
			if !ctxsleep.Sleep(ctx, 30*time.Second) {
				return
			}
		}
	}
}

// save writes the credentials (key 0600) and makes them current.
func (id *identity) save(keyPEM, certPEM, caPEM []byte) error {
	if err := os.MkdirAll(id.dir, 0o700); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the server's certificate does not match our key: %w", err)
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return err
	}
	caPath, keyPath, certPath := id.paths()
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{caPath, caPEM, 0o644}, {keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}} {
		if err := os.WriteFile(f.path+".tmp", f.data, f.mode); err != nil {
			return err
		}
		if err := os.Rename(f.path+".tmp", f.path); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("the server sent no CA certificate")
	}
	id.ca = pool
	now := time.Now()
	id.cert.Store(&pair)
	id.issued.Store(&now)
	return nil
}

func post(ctx context.Context, hc *http.Client, u string, body, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e model.APIError
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s (%s)", e.Message, e.Code)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}
