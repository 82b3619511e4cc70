package image

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("image store tests need root (mknod, trusted xattrs, overlay mounts)")
	}
	t.Skip("needs root")
}

// tempDir makes a berth-test-* directory removed at cleanup, after every
// mount below it is detached.
func tempDir(t testing.TB, what string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-"+what+"-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		os.RemoveAll(dir)
	})
	return dir
}

// unmountUnder detaches every mount at or below dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			p := unescapeMountinfo(f[4])
			if p == dir || strings.HasPrefix(p, dir+"/") {
				targets = append(targets, p)
			}
		}
	}
	for i := len(targets) - 1; i >= 0; i-- {
		_ = unix.Unmount(targets[i], unix.MNT_DETACH)
	}
}

// newService opens a store in a fresh temp dir, closed at cleanup.
func newService(t testing.TB, opts Options) *Service {
	t.Helper()
	requireRoot(t)
	s, err := Open(filepath.Join(tempDir(t, "images"), "images"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// countingTransport counts requests by URL path.
type countingTransport struct {
	mu    sync.Mutex
	paths map[string]int
	base  http.RoundTripper
}

func newCounter() *countingTransport {
	return &countingTransport{paths: map[string]int{}, base: http.DefaultTransport}
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.paths[req.Method+" "+req.URL.Path]++
	c.mu.Unlock()
	return c.base.RoundTrip(req)
}

// blobGets returns how many times blob digest was fetched.
func (c *countingTransport) blobGets(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for p, v := range c.paths {
		if strings.HasPrefix(p, "GET ") && strings.HasSuffix(p, "/blobs/"+digest) {
			n += v
		}
	}
	return n
}

// corruptingProxy is a reverse proxy to reg that flips one byte of blob
// digest (same length, so only the hash can tell). It returns the
// proxy's host.
func corruptingProxy(t testing.TB, reg *registrytest.Registry, digest string) string {
	t.Helper()
	target, _ := url.Parse("http://" + reg.Host)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || !strings.HasSuffix(resp.Request.URL.Path, "/blobs/"+digest) {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if len(b) > 20 {
			b[20] ^= 0xff
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// dirNames lists a directory's entries.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// failAfter is a reader that fails after n bytes.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errInjected
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

var errInjected = &injectedError{}

type injectedError struct{}

func (*injectedError) Error() string { return "injected read failure" }

func bg() context.Context { return context.Background() }
