package agentapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// NodeLookup returns a node's object (the server reads it from the store).
type NodeLookup func(ctx context.Context, name string) (model.Node, error)

// Logs reads instance logs from the agents that run them: the server's
// log source in a cluster (api.LogSource).
type Logs struct {
	// CA verifies agents' certificates.
	CA *x509.CertPool
	// Certificate is the server's certificate, presented to agents.
	Certificate tls.Certificate
	Node        NodeLookup
	// DialTimeout bounds reaching an agent (default 5s).
	DialTimeout time.Duration
}

// InstanceLogs asks in's node for its logs. The connection is accepted
// only if the agent presents the node certificate of in.Node.
func (l *Logs) InstanceLogs(ctx context.Context, in model.Instance, follow bool, tail int) (io.ReadCloser, error) {
	node, err := l.Node(ctx, in.Node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", in.Node, err)
	}
	if node.AgentAPI == "" {
		return nil, fmt.Errorf("node %s advertises no agent endpoint (an agent older than this server, or started with --agent-listen=off)", in.Node)
	}
	timeout := l.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	tr := &http.Transport{TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: 15 * time.Second, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{l.Certificate},
			// Node certificates name the node, not an address:
			// verifyNode checks the chain and the name itself.
			InsecureSkipVerify:    true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error { return verifyNode(raw, l.CA, in.Node) }}}
	body, _ := json.Marshal(LogRequest{Instance: in, Follow: follow, Tail: tail})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+node.AgentAPI+logsPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of node %s at %s: %w", in.Node, node.AgentAPI, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("agent of node %s: %s", in.Node, strings.TrimSpace(string(msg)))
	}
	return resp.Body, nil
}

// verifyNode admits only node's certificate, signed by the cluster CA.
func verifyNode(raw [][]byte, ca *x509.CertPool, node string) error {
	leaf, err := verifyChain(raw, ca, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	if leaf.Subject.CommonName != node {
		return fmt.Errorf("the agent presented the certificate of node %q, not %q", leaf.Subject.CommonName, node)
	}
	return nil
}
