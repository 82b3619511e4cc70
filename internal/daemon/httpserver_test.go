package daemon

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// The API server's HTTP/2 settings (a small header table) still serve
// concurrent requests whose response headers change on every call.
func TestAPIServerHTTP2(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.URL.Query().Get("n"))
		fmt.Fprint(w, r.URL.Query().Get("n"))
	})
	ts := httptest.NewUnstartedServer(h)
	ts.Config = newAPIServer(h)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes of spare connections cut short at Close
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	c := ts.Client()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			n := fmt.Sprint(i)
			resp, err := c.Get(ts.URL + "/?n=" + n)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 || resp.Header.Get("X-Echo") != n || string(body) != n {
				t.Errorf("request %s: %s, X-Echo %q, body %q", n, resp.Proto, resp.Header.Get("X-Echo"), body)
			}
		})
	}
	wg.Wait()
}
