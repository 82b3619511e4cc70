package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// selfSigned makes a certificate for names, valid for an hour.
func selfSigned(t testing.TB, name string, names ...string) model.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return model.Certificate{Name: name,
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))}
}

func TestSNIPicksCertificate(t *testing.T) {
	st := newStore(t)
	exact := selfSigned(t, "a-cert", "a.example.test")
	wild := selfSigned(t, "wild-cert", "*.wild.test")
	pinned := selfSigned(t, "pinned-cert", "other.name")
	for _, c := range []model.Certificate{exact, wild, pinned} {
		put(t, st, model.CertKey(c.Name), c)
	}
	putApp(t, st, "a", 1, model.Route{Host: "a.example.test", Port: "http", TLS: &model.RouteTLS{}})
	putApp(t, st, "w", 1, model.Route{Host: "*.wild.test", Port: "http", TLS: &model.RouteTLS{}})
	putApp(t, st, "p", 1, model.Route{Host: "p.example.test", Port: "http", TLS: &model.RouteTLS{SecretName: "pinned-cert"}})
	be := backend(t, "A")
	putInstance(t, st, "a", "a1", 1, hostPort(be))
	r := startRouter(t, st, Options{})
	eventually(t, "a1 routed", func() bool { return backendsOf(r, "a.example.test", "/") == "a1" })

	for _, c := range []struct{ sni, want string }{
		{"a.example.test", "a.example.test"},
		{"x.wild.test", "*.wild.test"},
		{"Y.Wild.Test", "*.wild.test"},
		{"p.example.test", "other.name"},
	} {
		conn, err := tls.Dial("tcp", r.Addrs().HTTPS, &tls.Config{ServerName: c.sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%s: %v", c.sni, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]
		conn.Close()
		if got != c.want {
			t.Errorf("SNI %s got certificate for %s, want %s", c.sni, got, c.want)
		}
	}
	if conn, err := tls.Dial("tcp", r.Addrs().HTTPS, &tls.Config{ServerName: "unknown.test", InsecureSkipVerify: true}); err == nil {
		conn.Close()
		t.Fatal("handshake for a name without certificate succeeded")
	}

	// HTTP/2 over TLS with a verifying client.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(exact.CertPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "a.example.test"}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", r.Addrs().HTTPS)
		}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: waitFor}).Get("https://a.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "A" || resp.ProtoMajor != 2 {
		t.Fatalf("https: %d %q %s", resp.StatusCode, body, resp.Proto)
	}
}

func TestHTTPToHTTPSRedirect(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "s", 1, model.Route{Host: "secure.test", Port: "http", TLS: &model.RouteTLS{Redirect: true}})
	putApp(t, st, "p", 1, route("plain.test"))
	be := backend(t, "A")
	putInstance(t, st, "s", "s1", 1, hostPort(be))
	putInstance(t, st, "p", "p1", 1, hostPort(be))
	r := startRouter(t, st, Options{HTTPSPort: 8443})
	eventually(t, "routes", func() bool {
		return backendsOf(r, "secure.test", "/") == "s1" && backendsOf(r, "plain.test", "/") == "p1"
	})
	c := newClient(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+"/a/b?x=1", nil)
	req.Host = "secure.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://secure.test:8443/a/b?x=1" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, body := get(t, c, r, "plain.test", "/"); code != 200 || body != "A" {
		t.Fatalf("route without redirect: %d %q", code, body)
	}
}

// TestWebSocketEcho: the Upgrade handshake goes through and the bytes
// after it are passed both ways (the backend echoes them).
func TestWebSocketEcho(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "ws", 1, route("ws.test"))
	be := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want websocket", http.StatusBadRequest)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
		_ = rw.Flush()
		_, _ = io.Copy(conn, rw) // echo until the client closes
	})
	putInstance(t, st, "ws", "w1", 1, hostPort(be))
	logBuf := &syncBuffer{}
	r := startRouter(t, st, Options{AccessLog: logBuf})
	eventually(t, "w1 routed", func() bool { return backendsOf(r, "ws.test", "/") == "w1" })

	conn, err := net.Dial("tcp", r.Addrs().HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	_, _ = io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello", "world, twice"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q %v", msg, buf, err)
		}
	}
	conn.Close()
	eventually(t, "access log line of the upgrade", func() bool {
		return strings.Contains(logBuf.String(), `path="/chat" status=101 upstream=`+hostPort(be))
	})
}

// TestH2C: the plain listener speaks HTTP/2 without TLS to clients that
// ask for it with prior knowledge.
func TestH2C(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "h", 1, route("h2c.test"))
	putInstance(t, st, "h", "h1", 1, hostPort(backend(t, "A")))
	r := startRouter(t, st, Options{})
	eventually(t, "h1 routed", func() bool { return backendsOf(r, "h2c.test", "/") == "h1" })
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+"/", nil)
	req.Host = "h2c.test"
	resp, err := (&http.Client{Transport: tr, Timeout: waitFor}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "A" {
		t.Fatalf("h2c: %s %q", resp.Proto, body)
	}
}

func TestTCPRoute(t *testing.T) {
	st := newStore(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	port := freePort(t)
	putApp(t, st, "db", 1, model.Route{Protocol: model.RouteTCP, ListenPort: port, Port: "http"})
	putInstance(t, st, "db", "d1", 1, echo.Addr().String())
	r := startRouter(t, st, Options{})
	eventually(t, "tcp route", func() bool { rt := r.Table().TCP[port]; return rt != nil && len(rt.Backends) == 1 })
	var conn net.Conn
	eventually(t, "tcp listener", func() bool {
		conn, err = net.Dial("tcp", net.JoinHostPort("127.0.0.1", portString(port)))
		return err == nil
	})
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(conn, "ping over tcp"); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "ping over tcp" {
		t.Fatalf("echo: %q %v", got, err)
	}
	// Removing the route closes the listener.
	putApp(t, st, "db", 2)
	eventually(t, "tcp listener closed", func() bool {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", portString(port)))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// TestStreamingIsFlushed: a server-sent-events response reaches the
// client chunk by chunk, not when the upstream finishes.
func TestStreamingIsFlushed(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "sse", 1, route("sse.test"))
	release := make(chan struct{})
	be := newHandlerServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-release
		_, _ = io.WriteString(w, "data: second\n\n")
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the backend's Close, even on failure
	putInstance(t, st, "sse", "s1", 1, hostPort(be))
	r := startRouter(t, st, Options{})
	eventually(t, "s1 routed", func() bool { return backendsOf(r, "sse.test", "/") == "s1" })
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+"/events", nil)
	req.Host = "sse.test"
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event before the upstream finished: %q %v", line, err)
	}
	unblock()
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest %q", rest)
	}
}
