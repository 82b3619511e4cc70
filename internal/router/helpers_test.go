package router

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// waitFor is the generous timeout of every poll: it only stops a hung test.
const waitFor = 15 * time.Second

func newStore(t testing.TB) *bolt.Store {
	t.Helper()
	st := bolttest.Open(t)
	put(t, st, model.NodeKey("n1"), model.Node{Name: "n1", Address: "127.0.0.1", Status: model.NodeReady})
	return st
}

func put(t testing.TB, st store.Store, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(key, b)}}); err != nil {
		t.Fatal(err)
	}
}

func del(t testing.TB, st store.Store, key string) {
	t.Helper()
	if _, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Delete(key)}}); err != nil {
		t.Fatal(err)
	}
}

// putApp stores app name at revision rev with routes (normalized).
func putApp(t testing.TB, st store.Store, name string, rev int64, routes ...model.Route) {
	t.Helper()
	spec := model.AppSpec{Name: name, Namespace: "default", Image: "x", Ports: []model.PortSpec{{Name: "http", ContainerPort: 80}}, Routes: routes}
	spec.NormalizeRoutes()
	put(t, st, model.AppKey("default", name), model.App{Namespace: "default", Name: name, Revision: rev, Spec: spec})
}

// putInstance stores a running instance of app on n1 whose http port is
// the port of addr.
func putInstance(t testing.TB, st store.Store, app, id string, rev int64, addr string, mut ...func(*model.Instance)) {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	in := model.Instance{ID: id, Namespace: "default", App: app, Revision: rev, Node: "n1", Desired: model.DesiredRun,
		HostPorts: map[string]int{"http": port}, Status: model.InstanceStatus{State: model.StateRunning}}
	for _, m := range mut {
		m(&in)
	}
	put(t, st, in.Key(), in)
}

func stopInstance(i *model.Instance) { i.Desired = model.DesiredStop }

// backend is an HTTP server on loopback that answers its name.
func backend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostPort(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// startRouter runs a router on st with loopback listeners until the test
// ends.
func startRouter(t testing.TB, st store.Store, o Options) *Router {
	t.Helper()
	o.Source = NewStoreSource(st, o.Log)
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.TLSListen == "" {
		o.TLSListen = "127.0.0.1:0"
	}
	if o.MetricsListen == "" {
		o.MetricsListen = "127.0.0.1:0"
	}
	o.TCPHost = "127.0.0.1"
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router Run: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case <-time.After(waitFor):
		t.Fatal("router never loaded its first table")
	}
	return r
}

// get sends GET path with Host host through the router's plain listener.
func get(t testing.TB, c *http.Client, r *Router, host, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backendsOf lists the instances the router's table has for host/path.
func backendsOf(r *Router, host, path string) string {
	rt := r.Table().Match(host, path)
	if rt == nil {
		return "<no route>"
	}
	var ids []string
	for _, b := range rt.Backends {
		ids = append(ids, b.Instance)
	}
	return strings.Join(ids, ",")
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func route(host string) model.Route { return model.Route{Host: host, Port: "http"} }

func newHandlerServer(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
