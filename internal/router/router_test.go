package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store/bolt"
)

func TestRouteFollowsInstances(t *testing.T) {
	st := newStore(t)
	logBuf := &syncBuffer{}
	putApp(t, st, "hello", 1, route("hello.example.test"))
	r := startRouter(t, st, Options{AccessLog: logBuf})
	c := newClient(t)

	code, body := get(t, c, r, "hello.example.test", "/")
	if code != http.StatusBadGateway || !strings.Contains(body, "no ready instance of app default/hello") {
		t.Fatalf("no instances: %d %q", code, body)
	}
	if code, body = get(t, c, r, "nobody.example.test", "/"); code != http.StatusNotFound || !strings.Contains(body, `no app is routed for host "nobody.example.test"`) {
		t.Fatalf("unknown host: %d %q", code, body)
	}

	a, b := backend(t, "A"), backend(t, "B")
	putInstance(t, st, "hello", "a", 1, hostPort(a))
	eventually(t, "instance a in the table", func() bool { return backendsOf(r, "hello.example.test", "/") == "a" })
	if code, body = get(t, c, r, "Hello.Example.Test:80", "/x"); code != 200 || body != "A" {
		t.Fatalf("one instance: %d %q", code, body)
	}

	putInstance(t, st, "hello", "b", 1, hostPort(b))
	eventually(t, "instance b in the table", func() bool { return backendsOf(r, "hello.example.test", "/") == "a,b" })
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		_, body := get(t, c, r, "hello.example.test", "/")
		seen[body]++
	}
	if seen["A"] != 5 || seen["B"] != 5 {
		t.Fatalf("round-robin over two instances: %v", seen)
	}

	// Desired stop takes the instance out at once, before it stops.
	putInstance(t, st, "hello", "a", 1, hostPort(a), stopInstance)
	eventually(t, "instance a out of the table", func() bool { return backendsOf(r, "hello.example.test", "/") == "b" })
	for i := 0; i < 10; i++ {
		if _, body := get(t, c, r, "hello.example.test", "/"); body != "B" {
			t.Fatalf("request %d went to %q after a was desired to stop", i, body)
		}
	}
	// Not ready (unhealthy with a health check) leaves too.
	putInstance(t, st, "hello", "b", 1, hostPort(b), func(i *model.Instance) { i.Status.State = model.StateStopping })
	eventually(t, "instance b out of the table", func() bool { return backendsOf(r, "hello.example.test", "/") == "" })
	if code, _ := get(t, c, r, "hello.example.test", "/"); code != http.StatusBadGateway {
		t.Fatalf("no ready instance: %d", code)
	}
	// App deleted: unknown host.
	del(t, st, model.AppKey("default", "hello"))
	eventually(t, "route gone", func() bool { return backendsOf(r, "hello.example.test", "/") == "<no route>" })

	log := logBuf.String()
	if !strings.Contains(log, "host=hello.example.test method=GET path=\"/x\" status=200 upstream="+hostPort(a)) {
		t.Fatalf("access log lacks the request to a:\n%s", log)
	}
}

// TestInstanceKilledUnderLoad: 4 goroutines send 500 GETs while one of
// two instances is first taken out of the table (desired stop) and then
// killed, and another is killed while still in the table (its connect
// failures are retried on the remaining instance). No request may fail.
func TestInstanceKilledUnderLoad(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "web", 1, route("web.test"))
	a, b, c3 := backend(t, "A"), backend(t, "B"), backend(t, "C")
	putInstance(t, st, "web", "a", 1, hostPort(a))
	putInstance(t, st, "web", "b", 1, hostPort(b))
	putInstance(t, st, "web", "c", 1, hostPort(c3))
	r := startRouter(t, st, Options{})
	eventually(t, "three instances", func() bool { return backendsOf(r, "web.test", "/") == "a,b,c" })
	c := newClient(t)

	var done, bad atomic.Int64
	var failures sync.Map
	var wg sync.WaitGroup
	const total, workers = 500, 4
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < total/workers; i++ {
				req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+"/", nil)
				req.Host = "web.test"
				resp, err := c.Do(req)
				if err != nil {
					bad.Add(1)
					failures.Store(err.Error(), true)
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						bad.Add(1)
						failures.Store(string(body), true)
					}
				}
				done.Add(1)
			}
		}()
	}
	eventually(t, "100 requests done", func() bool { return done.Load() >= 100 })
	// Drain a: out of the table first, then killed.
	putInstance(t, st, "web", "a", 1, hostPort(a), stopInstance)
	eventually(t, "a out of the table", func() bool { return backendsOf(r, "web.test", "/") == "b,c" })
	a.Close()
	eventually(t, "250 requests done", func() bool { return done.Load() >= 250 })
	// Kill b while the table still lists it: connects fail, GETs retry.
	b.CloseClientConnections()
	b.Listener.Close()
	wg.Wait()
	if n := bad.Load(); n != 0 {
		var msgs []string
		failures.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Fatalf("%d of %d requests failed: %v", n, total, msgs)
	}
}

func TestLeastConnectionsPicksIdleBackend(t *testing.T) {
	st := newStore(t)
	rt := route("lc.test")
	rt.Balance = model.BalanceLeastConnections
	putApp(t, st, "lc", 1, rt)
	release := make(chan struct{})
	var slowHits, fastHits atomic.Int64
	slow := newHandlerServer(t, func(w http.ResponseWriter, _ *http.Request) {
		slowHits.Add(1)
		<-release
		_, _ = io.WriteString(w, "slow")
	})
	fast := newHandlerServer(t, func(w http.ResponseWriter, _ *http.Request) {
		fastHits.Add(1)
		_, _ = io.WriteString(w, "fast")
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the backends' Close, even on failure
	putInstance(t, st, "lc", "slow", 1, hostPort(slow))
	r := startRouter(t, st, Options{})
	eventually(t, "slow in the table", func() bool { return backendsOf(r, "lc.test", "/") == "slow" })
	c := newClient(t)
	var held sync.WaitGroup
	for i := 0; i < 3; i++ {
		held.Add(1)
		go func() {
			defer held.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addrs().HTTP+"/", nil)
			req.Host = "lc.test"
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	eventually(t, "3 requests held by slow", func() bool { return slowHits.Load() == 3 })
	putInstance(t, st, "lc", "fast", 1, hostPort(fast))
	eventually(t, "fast in the table", func() bool { return backendsOf(r, "lc.test", "/") == "fast,slow" })
	for i := 0; i < 10; i++ {
		if code, body := get(t, c, r, "lc.test", "/"); code != 200 || body != "fast" {
			t.Fatalf("request %d: %d %q, want the idle backend", i, code, body)
		}
	}
	unblock()
	held.Wait()
	if slowHits.Load() != 3 || fastHits.Load() != 10 {
		t.Fatalf("slow %d fast %d", slowHits.Load(), fastHits.Load())
	}
}

func TestRestartRebuildsFromStore(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "one", 1, route("one.test"))
	putApp(t, st, "two", 1, route("two.test"))
	a, b := backend(t, "A"), backend(t, "B")
	putInstance(t, st, "one", "a", 1, hostPort(a))
	putInstance(t, st, "one", "b", 1, hostPort(b))
	ctx, cancel := context.WithCancel(context.Background())
	r1, err := New(Options{Source: NewStoreSource(st, nil), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r1.Run(ctx) }()
	<-r1.Ready()
	eventually(t, "first router has a,b", func() bool { return backendsOf(r1, "one.test", "/") == "a,b" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// While no router runs: a stops, app two loses its route, three appears.
	putInstance(t, st, "one", "a", 1, hostPort(a), stopInstance)
	putApp(t, st, "two", 2)
	putApp(t, st, "three", 1, route("three.test"))
	putInstance(t, st, "three", "t", 1, hostPort(a))

	r2 := startRouter(t, st, Options{})
	c := newClient(t)
	if got := backendsOf(r2, "one.test", "/"); got != "b" {
		t.Fatalf("after restart one.test has %q, want b", got)
	}
	if code, _ := get(t, c, r2, "two.test", "/"); code != http.StatusNotFound {
		t.Fatalf("stale route two.test: %d", code)
	}
	if code, body := get(t, c, r2, "three.test", "/"); code != 200 || body != "A" {
		t.Fatalf("new route three.test: %d %q", code, body)
	}
}

func TestMetricsAreServed(t *testing.T) {
	st := newStore(t)
	putApp(t, st, "m", 1, route("m.test"))
	a := backend(t, "A")
	putInstance(t, st, "m", "a", 1, hostPort(a))
	r := startRouter(t, st, Options{})
	eventually(t, "route", func() bool { return backendsOf(r, "m.test", "/") == "a" })
	c := newClient(t)
	get(t, c, r, "m.test", "/")
	get(t, c, r, "none.test", "/")
	resp, err := c.Get("http://" + r.Addrs().Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`berth_router_requests_total{code="200",route="default/m m.test/",upstream="` + hostPort(a) + `"} 1`,
		`berth_router_requests_total{code="404",route="none",upstream="none"} 1`,
		`berth_router_request_duration_seconds_count{route="default/m m.test/",upstream="` + hostPort(a) + `"} 1`,
		`berth_router_active_connections{listener="http"}`,
		`berth_router_routes 1`,
		`berth_router_upstream_active{upstream="` + hostPort(a) + `"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestSourceRelistsAfterDroppedWatch: with a tiny watch buffer the store
// drops the router's watch under a burst of writes; the source lists
// again and the table ends up matching the store.
func TestSourceRelistsAfterDroppedWatch(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{WatchBuffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	put(t, st, model.NodeKey("n1"), model.Node{Name: "n1", Status: model.NodeReady})
	putApp(t, st, "burst", 1, route("burst.test"))
	logs := &syncBuffer{}
	r := startRouter(t, st, Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	be := backend(t, "A")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				putInstance(t, st, "burst", fmt.Sprintf("i%d-%02d", w, i), 1, hostPort(be), func(in *model.Instance) {
					if i%2 == 1 {
						in.Desired = model.DesiredStop
					}
				})
			}
		}()
	}
	wg.Wait()
	eventually(t, "100 ready instances in the table", func() bool {
		rt := r.Table().Match("burst.test", "/")
		return rt != nil && len(rt.Backends) == 100
	})
	if code, body := get(t, newClient(t), r, "burst.test", "/"); code != 200 || body != "A" {
		t.Fatalf("%d %q", code, body)
	}
	t.Logf("watch re-listed %d times", strings.Count(logs.String(), "listing again"))
}
