package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkProxyUpstreamClose is BenchmarkProxy against backends that
// answer "Connection: close", like busybox httpd in `berth bench router`:
// every request dials its upstream.
func BenchmarkProxyUpstreamClose(b *testing.B) {
	st := newStore(b)
	putApp(b, st, "bench", 1, route("bench.test"))
	for _, id := range []string{"b1", "b2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "ok\n")
		}))
		b.Cleanup(srv.Close)
		putInstance(b, st, "bench", id, 1, hostPort(srv))
	}
	r := startRouter(b, st, Options{})
	eventually(b, "routes", func() bool { return backendsOf(r, "bench.test", "/") == "b1,b2" })
	loadThroughRouter(b, r, "bench.test")
}

// loadThroughRouter sends GETs for host through r from parallel clients
// over kept-alive connections and reports req/s.
func loadThroughRouter(b *testing.B, r *Router, host string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	url := "http://" + r.Addrs().HTTP + "/"
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
