package router

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// countingBackend is a keep-alive backend that counts the connections it
// accepted and those still open.
func countingBackend(t *testing.T, h http.HandlerFunc) (srv *httptest.Server, accepted, open *atomic.Int64) {
	t.Helper()
	accepted, open = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			accepted.Add(1)
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, accepted, open
}

// TestLeanClientReusesConnections: sequential GETs, HEADs and 304s to a
// keep-alive instance share one upstream connection, and the idle
// connection is closed when the instance leaves the table.
func TestLeanClientReusesConnections(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "ka", 1, route("ka.test"))
	be, accepted, open := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cached" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("X-Method", r.Method)
		_, _ = io.WriteString(w, "body of "+r.URL.Path)
	})
	putInstance(t, st, "ka", "k1", 1, hostPort(be))
	r := startRouter(t, st, Options{})
	eventually(t, "k1 routed", func() bool { return backendsOf(r, "ka.test", "/") == "k1" })
	c := newClient(t)
	for i := 0; i < 20; i++ {
		if code, body := get(t, c, r, "ka.test", fmt.Sprintf("/p%d", i)); code != 200 || body != fmt.Sprintf("body of /p%d", i) {
			t.Fatalf("GET %d: %d %q", i, code, body)
		}
		if code, body := get(t, c, r, "ka.test", "/cached"); code != http.StatusNotModified || body != "" {
			t.Fatalf("304 %d: %d %q", i, code, body)
		}
		req, _ := http.NewRequest(http.MethodHead, "http://"+r.Addrs().HTTP+"/h", nil)
		req.Host = "ka.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Method") != "HEAD" {
			t.Fatalf("HEAD %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("60 sequential requests took %d upstream connections, want 1", n)
	}
	del(t, st, model.InstanceKey("default", "ka", "k1"))
	eventually(t, "k1 out of the table", func() bool { return backendsOf(r, "ka.test", "/") == "" })
	eventually(t, "the idle upstream connection closed", func() bool { return open.Load() == 0 })
}

// TestLeanClientReplaysOnClosedIdleConnection: an instance that answers
// as if keeping the connection, then closes it, makes the router's next
// request on it fail before any answer; the request is replayed on a new
// connection and the client never sees the failure.
func TestLeanClientReplaysOnClosedIdleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(waitFor))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body := "served " + req.URL.Path
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				// no Connection: close, yet the connection ends here
			}()
		}
	}()
	st := newStore(t)
	putApp(t, st, "st", 1, route("stale.test"))
	putInstance(t, st, "st", "s1", 1, ln.Addr().String())
	r := startRouter(t, st, Options{})
	eventually(t, "s1 routed", func() bool { return backendsOf(r, "stale.test", "/") == "s1" })
	c := newClient(t)
	for i := 0; i < 10; i++ {
		if i > 0 { // let the instance's close reach the router's idle connection
			time.Sleep(5 * time.Millisecond)
		}
		if code, body := get(t, c, r, "stale.test", fmt.Sprintf("/%d", i)); code != 200 || body != fmt.Sprintf("served /%d", i) {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := accepted.Load(); n != 10 {
		t.Fatalf("instance accepted %d connections for 10 requests, want 10", n)
	}
}

// TestLeanClientClientGone: a client that gives up cancels the upstream
// request: the instance sees its connection close.
func TestLeanClientClientGone(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "slow", 1, route("slow.test"))
	upstreamGone := make(chan struct{})
	be := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(upstreamGone)
		case <-time.After(waitFor):
		}
	})
	putInstance(t, st, "slow", "s1", 1, hostPort(be))
	r := startRouter(t, st, Options{})
	eventually(t, "s1 routed", func() bool { return backendsOf(r, "slow.test", "/") == "s1" })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addrs().HTTP+"/", nil)
	req.Host = "slow.test"
	if resp, err := newClient(t).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("request answered %d, want the client's timeout", resp.StatusCode)
	}
	select {
	case <-upstreamGone:
	case <-time.After(waitFor):
		t.Fatal("the instance's request was not cancelled after the client left")
	}
}

// TestLeanClientEdgeCases: 103 Early Hints reach the client; endless
// 1xx responses and an oversized response header are a 502; requests with a body and
// non-idempotent ones still go through (http.Transport) with their body.
func TestLeanClientEdgeCases(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "e", 1, route("edge.test"))
	be := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "after hints")
		case "/endless-hints":
			for i := 0; i <= max1xxResponses; i++ {
				w.WriteHeader(http.StatusEarlyHints)
			}
		case "/huge":
			w.Header().Set("X-Huge", strings.Repeat("x", maxResponseHeaderBytes))
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s", r.Method, b)
		}
	})
	putInstance(t, st, "e", "e1", 1, hostPort(be))
	r := startRouter(t, st, Options{})
	eventually(t, "e1 routed", func() bool { return backendsOf(r, "edge.test", "/") == "e1" })
	c := newClient(t)

	var hints []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if h.Get("Link") != "" {
			hints = append(hints, code)
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+r.Addrs().HTTP+"/hints", nil)
	req.Host = "edge.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "after hints" || len(hints) != 1 || hints[0] != http.StatusEarlyHints {
		t.Fatalf("early hints: %d %q, 1xx with Link: %v", resp.StatusCode, body, hints)
	}

	if code, body := get(t, c, r, "edge.test", "/endless-hints"); code != http.StatusBadGateway || !strings.Contains(body, "informational") {
		t.Fatalf("too many 1xx: %d %q", code, body)
	}
	if code, body := get(t, c, r, "edge.test", "/huge"); code != http.StatusBadGateway || !strings.Contains(body, "response header larger than") {
		t.Fatalf("oversized header: %d %q", code, body)
	}

	for _, m := range []string{http.MethodPost, http.MethodPut} {
		req, _ := http.NewRequest(m, "http://"+r.Addrs().HTTP+"/echo", strings.NewReader("payload"))
		req.Host = "edge.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != m+" payload" {
			t.Fatalf("%s with a body: %d %q", m, resp.StatusCode, body)
		}
	}
}

// TestLeanBodyCloseAbortsRead: closing a response body while a Read
// waits for the instance ends the Read, and the connection is not kept.
func TestLeanBodyCloseAbortsRead(t *testing.T) {
	release := make(chan struct{})
	be := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "12345")
		w.(http.Flusher).Flush()
		select { // the other half never comes
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes
	up := &upstream{addr: hostPort(be)}
	req, _ := http.NewRequest(http.MethodGet, "http://"+up.addr+"/", nil)
	resp, err := newH1Client(time.Second).roundTrip(up, req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "12345" {
		t.Fatalf("first half: %q %v", buf, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(buf)
		errc <- err
	}()
	resp.Body.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Read after Close returned no error")
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not end the blocked Read")
	}
	if pc := up.takeIdle(time.Now()); pc != nil {
		pc.close()
		t.Fatal("a connection closed mid-body went back to the pool")
	}
}
