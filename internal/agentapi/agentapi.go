// Package agentapi is the endpoint a `berth agent` serves for the server:
// instance logs, which live on the node. Both ends authenticate with the
// cluster CA: the agent presents its node certificate and accepts only the
// server's certificate (CN "berth server", server usage); the server
// accepts only the node certificate of the node it meant to reach.
package agentapi

import (
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
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// ServerCommonName is the subject of the server's certificate (pki).
const ServerCommonName = "berth server"

// DefaultPort is where agents listen unless told otherwise.
const DefaultPort = 7071

// LogSource is the agent's side: an instance's logs from its driver.
type LogSource interface {
	InstanceLogs(ctx context.Context, in model.Instance, follow bool, tail int) (io.ReadCloser, error)
}

// LogRequest asks an agent for one instance's logs.
type LogRequest struct {
	Instance model.Instance `json:"instance"`
	Follow   bool           `json:"follow"`
	Tail     int            `json:"tail"`
}

const logsPath = "/v1/agent/logs"

// ServerOptions configure Serve.
type ServerOptions struct {
	// Node is this agent's node name; requests for other nodes'
	// instances are refused.
	Node string
	// CA verifies the caller's certificate.
	CA *x509.CertPool
	// Certificate returns the node's current certificate (it rotates).
	Certificate func() *tls.Certificate
	Logs        LogSource
	Log         *slog.Logger
}

// Serve answers on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, o ServerOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+logsPath, func(w http.ResponseWriter, r *http.Request) { serveLogs(w, r, o) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return o.Certificate(), nil },
			// The server's certificate is a server certificate, so the
			// standard client verification (client usage) would refuse
			// it; verifyServerCaller checks the chain itself.
			ClientAuth:            tls.RequireAnyClientCert,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error { return verifyServerCaller(raw, o.CA) },
		}}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// verifyServerCaller admits only the cluster server's certificate.
func verifyServerCaller(raw [][]byte, ca *x509.CertPool) error {
	leaf, err := verifyChain(raw, ca, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	if leaf.Subject.CommonName != ServerCommonName {
		return fmt.Errorf("certificate %q is not the berth server's", leaf.Subject.CommonName)
	}
	return nil
}

// verifyChain verifies a peer's chain against ca for usage.
func verifyChain(raw [][]byte, ca *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, err
	}
	return certs[0], nil
}

func serveLogs(w http.ResponseWriter, r *http.Request, o ServerOptions) {
	var req LogRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad log request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Instance.Node != o.Node {
		http.Error(w, fmt.Sprintf("instance %s runs on node %s, not %s", req.Instance.ID, req.Instance.Node, o.Node), http.StatusNotFound)
		return
	}
	rc, err := o.Logs.InstanceLogs(r.Context(), req.Instance, req.Follow, req.Tail)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
