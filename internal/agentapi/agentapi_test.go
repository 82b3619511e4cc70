package agentapi

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/pki/pkitest"
)

// fixedLogs answers every instance with the same text.
type fixedLogs string

func (f fixedLogs) InstanceLogs(_ context.Context, in model.Instance, _ bool, tail int) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(f) + " " + in.ID)), nil
}

func nodeCert(t *testing.T, ca *pki.CA, node string) tls.Certificate {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(node)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.SignClient(csrPEM, node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// The server reads logs from the agent of the instance's node; the agent
// accepts only the server's certificate, the server only that node's.
func TestLogsOverMutualTLS(t *testing.T) {
	ca, serverCert := pkitest.New(t)
	n1 := nodeCert(t, ca, "n1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, ServerOptions{Node: "n1", CA: ca.Pool(), Certificate: func() *tls.Certificate { return &n1 }, Logs: fixedLogs("hello from")})
	}()
	defer func() { cancel(); <-done }()
	nodes := func(addr string) NodeLookup {
		return func(_ context.Context, name string) (model.Node, error) {
			return model.Node{Name: name, AgentAPI: addr}, nil
		}
	}
	read := func(l *Logs, in model.Instance) (string, error) {
		rc, err := l.InstanceLogs(ctx, in, false, 0)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	srv := &Logs{CA: ca.Pool(), Certificate: serverCert, Node: nodes(ln.Addr().String())}
	if got, err := read(srv, model.Instance{ID: "i1", Node: "n1"}); err != nil || got != "hello from i1" {
		t.Fatalf("server reading n1's logs: %q %v", got, err)
	}
	// The endpoint of n1 answering for "n2" is refused by the server.
	if _, err := read(srv, model.Instance{ID: "i2", Node: "n2"}); err == nil || !strings.Contains(err.Error(), `"n1", not "n2"`) {
		t.Fatalf("wrong node's certificate accepted: %v", err)
	}
	// Another node's certificate cannot call the agent.
	n2 := nodeCert(t, ca, "n2")
	asNode := &Logs{CA: ca.Pool(), Certificate: n2, Node: nodes(ln.Addr().String())}
	if _, err := read(asNode, model.Instance{ID: "i1", Node: "n1"}); err == nil {
		t.Fatal("a node certificate read another node's logs")
	}
	// A certificate of another CA neither.
	_, otherServer := pkitest.New(t)
	if _, err := read(&Logs{CA: ca.Pool(), Certificate: otherServer, Node: nodes(ln.Addr().String())}, model.Instance{ID: "i1", Node: "n1"}); err == nil {
		t.Fatal("a foreign CA's server certificate was accepted")
	}
	// No endpoint advertised: a clear error.
	if _, err := read(&Logs{CA: ca.Pool(), Certificate: serverCert, Node: nodes("")}, model.Instance{ID: "i1", Node: "n1"}); err == nil ||
		!strings.Contains(err.Error(), "advertises no agent endpoint") {
		t.Fatalf("no endpoint: %v", err)
	}
}
