package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the process writing berth's
// output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

var routerUp = regexp.MustCompile(`msg="router is up" http=(\S+)`)

// routerAddr is the router's plain HTTP address from its "router is up"
// log line (the last one: berth may have been restarted).
func (b *berth) routerAddr() string {
	b.t.Helper()
	var addr string
	eventually(b.t, 30*time.Second, "the router's log line", func() bool {
		m := routerUp.FindAllStringSubmatch(b.logs.String(), -1)
		if len(m) == 0 {
			return false
		}
		addr = m[len(m)-1][1]
		return true
	})
	return addr
}

// loadOptions bound a load run.
type loadOptions struct {
	// Addr is the router, Host the route's host.
	Addr, Host string
	// Path is the request path (default "/").
	Path string
	// Header is set on every request when non-nil.
	Header http.Header
	// LocalIP is the loopback source address (e.g. 127.0.0.2); empty
	// means the default.
	LocalIP string
	// Workers run in parallel (default 4); Max bounds the requests
	// (default 2,000); Pause is each worker's wait between requests.
	Workers, Max int
	Pause        time.Duration
	// Timeout ends the run (default 2m).
	Timeout time.Duration
}

// loadResult counts what a load run got back.
type loadResult struct {
	mu      sync.Mutex
	OK      int
	Non2xx  int
	ConnErr int
	// ByBody counts 2xx answers by the first word of the body (the
	// revision's GREETING).
	ByBody  map[string]int
	Samples []string
}

func (r *loadResult) String() string {
	return fmt.Sprintf("ok %d, non-2xx %d, connection errors %d, by body %v, samples %v", r.OK, r.Non2xx, r.ConnErr, r.ByBody, r.Samples)
}

// runLoad sends GETs through the router until Max requests, the timeout
// or stop (when not nil) is closed. Loopback only.
func runLoad(t *testing.T, o loadOptions, stop <-chan struct{}) *loadResult {
	t.Helper()
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Max == 0 || o.Max > 2000 {
		o.Max = 2000
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if o.LocalIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.LocalIP)}
	}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: o.Workers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	res := &loadResult{ByBody: map[string]int{}}
	var mu sync.Mutex
	sent := 0
	next := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if sent >= o.Max || ctx.Err() != nil {
			return false
		}
		if stop != nil {
			select {
			case <-stop:
				return false
			default:
			}
		}
		sent++
		return true
	}
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next() {
				one(ctx, hc, o, res)
				if o.Pause > 0 {
					time.Sleep(o.Pause)
				}
			}
		}()
	}
	wg.Wait()
	return res
}

func one(ctx context.Context, hc *http.Client, o loadOptions, res *loadResult) {
	path := o.Path
	if path == "" {
		path = "/"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.Addr+path, nil)
	req.Host = o.Host
	for k, v := range o.Header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	res.mu.Lock()
	defer res.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			res.ConnErr++
			if len(res.Samples) < 5 {
				res.Samples = append(res.Samples, err.Error())
			}
		}
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		res.Non2xx++
		if len(res.Samples) < 5 {
			res.Samples = append(res.Samples, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body))))
		}
		return
	}
	res.OK++
	word, _, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
	res.ByBody[word]++
}

// background runs load until the returned function is called, which
// waits and returns the result.
func background(t *testing.T, o loadOptions) func() *loadResult {
	stop := make(chan struct{})
	done := make(chan *loadResult, 1)
	go func() { done <- runLoad(t, o, stop) }()
	return func() *loadResult {
		close(stop)
		return <-done
	}
}

// noErrors fails the test when a load run saw any failure.
func noErrors(t *testing.T, what string, r *loadResult) {
	t.Helper()
	if r.Non2xx != 0 || r.ConnErr != 0 || r.OK == 0 {
		t.Fatalf("%s: %s", what, r)
	}
	t.Logf("%s: %s", what, r)
}
