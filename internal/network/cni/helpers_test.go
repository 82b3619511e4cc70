//go:build linux

package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireHost skips (or, with CI=true, fails) when the test cannot touch
// the host network: not root, or plugins/iptables missing.
func requireHost(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root to create bridges, namespaces and iptables rules")
	}
	if err := checkHost(DefaultPluginDirs); err != nil {
		fail("%v", err)
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		fail("iptables-save not found (apt-get install iptables)")
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testEnv is one test's node network: its own bridge, subnet and state.
type testEnv struct {
	t    *testing.T
	opts Options
	net  *Network
}

// newTestEnv makes a network on a berth-test-<rand> bridge in a free
// 10.213.x.0/<bits> subnet, and removes everything it made in Cleanup.
func newTestEnv(t *testing.T, bits int) *testEnv {
	t.Helper()
	requireHost(t)
	dir, err := os.MkdirTemp("", "berth-test-*")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t}
	e.opts = Options{
		StateDir:   filepath.Join(dir, "network"),
		BridgeName: "berth-test-" + randHex(t, 2),
		NetNSDir:   filepath.Join(dir, "netns"),
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Registered after RemoveAll, so it runs before it.
	t.Cleanup(e.cleanup)
	for range 50 {
		b := make([]byte, 1)
		rand.Read(b)
		e.opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, b[0], 0}), bits)
		if checkSubnet(e.opts.Subnet, e.opts.BridgeName) == nil {
			break
		}
	}
	e.net, err = New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cleanup detaches every recorded workload, then removes whatever might
// remain even if a test failed half-way: namespaces under the test's
// NetNSDir, iptables rules naming the test subnet or bridge, the bridge.
func (e *testEnv) cleanup() {
	ctx := context.Background()
	if n, err := New(e.opts); err == nil {
		ids, _ := n.List(ctx)
		for _, id := range ids {
			if err := n.Detach(ctx, id); err != nil {
				e.t.Logf("cleanup: detach %s: %v", id, err)
			}
		}
	}
	if ents, err := os.ReadDir(e.opts.NetNSDir); err == nil {
		for _, ent := range ents {
			removeNetNS(filepath.Join(e.opts.NetNSDir, ent.Name()))
		}
	}
	prefix := strings.TrimSuffix(e.opts.Subnet.Addr().String(), "0")
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		chains := map[string]bool{} // per-workload chains of this network
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && (strings.Contains(line, prefix) || strings.Contains(line, e.opts.BridgeName)) {
				args := splitRule(strings.TrimPrefix(line, "-A "))
				if len(args) > 0 && len(args[0]) == 28 && strings.HasPrefix(args[0], "CNI-") {
					chains[args[0]] = true
				}
				args = append([]string{"-t", table, "-D"}, args...)
				if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
					e.t.Logf("cleanup: iptables %v: %v %s", args, err, out)
				}
			}
		}
		for c := range chains {
			exec.Command("iptables", "-t", table, "-X", c).Run()
		}
	}
	if l, err := netlink.LinkByName(e.opts.BridgeName); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			e.t.Logf("cleanup: delete bridge %s: %v", e.opts.BridgeName, err)
		}
	}
}

// splitRule splits an iptables-save rule into arguments, honouring the
// double quotes around comments.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\' && inQ && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// iptablesMentions returns the filter and nat rules that mention any of
// the needles; an IP needle must not be followed by a digit.
func iptablesMentions(t *testing.T, ip netip.Addr, hostPort int, id string) []string {
	t.Helper()
	var pats []string
	if ip.IsValid() {
		pats = append(pats, regexp.QuoteMeta(ip.String())+`([^0-9]|$)`)
	}
	if hostPort > 0 {
		p := strconv.Itoa(hostPort)
		pats = append(pats, `(dports? |:)`+p+`([^0-9]|$)`)
	}
	if id != "" {
		pats = append(pats, regexp.QuoteMeta(id))
	}
	re := regexp.MustCompile(strings.Join(pats, "|"))
	var hits []string
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatalf("iptables-save -t %s: %v", table, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && re.MatchString(line) {
				hits = append(hits, table+": "+line)
			}
		}
	}
	return hits
}

// inNetNS runs fn on a thread inside the namespace at path.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("back to host netns: %w", err)
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// serveIn starts an HTTP server on 0.0.0.0:port inside the namespace at
// path that answers with body.
func serveIn(t *testing.T, path string, port int, body string) {
	t.Helper()
	var l net.Listener
	err := inNetNS(path, func() (err error) {
		l, err = net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", path, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// get fetches url with a client whose connections are made inside the
// namespace at nsPath ("" means the host).
func get(t *testing.T, nsPath, url string) (string, error) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	if nsPath != "" {
		tr.DialContext = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNetNS(nsPath, func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// freePort returns a host TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := pickPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// leaseFor returns the host-local lease files naming id.
func (e *testEnv) leasesFor(id string) []string {
	var out []string
	filepath.Walk(filepath.Join(e.opts.StateDir, "ipam"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), id) {
				out = append(out, filepath.Base(p))
			}
		}
		return nil
	})
	return out
}

// assertGone checks that nothing of id is left: record, netns, claims,
// IP lease, iptables rules naming its IP, host port or id.
func (e *testEnv) assertGone(id string, ip netip.Addr, hostPort int) {
	t := e.t
	t.Helper()
	if _, ok, err := e.net.Get(context.Background(), id); err != nil || ok {
		t.Errorf("Get(%s) after removal: ok=%v err=%v", id, ok, err)
	}
	if _, ok, _ := e.net.store.load(id); ok {
		t.Errorf("record of %s still exists", id)
	}
	if _, err := os.Lstat(e.net.NetNSPath(id)); !os.IsNotExist(err) {
		t.Errorf("netns %s still exists (err=%v)", e.net.NetNSPath(id), err)
	}
	cl, _ := e.net.store.claims()
	for hp, owner := range cl {
		if owner == id {
			t.Errorf("claim on %s still held by %s", hp, id)
		}
	}
	if l := e.leasesFor(id); len(l) > 0 {
		t.Errorf("IP leases of %s still exist: %v", id, l)
	}
	if hits := iptablesMentions(t, ip, hostPort, id); len(hits) > 0 {
		t.Errorf("iptables rules left for %s (ip %v, port %d):\n%s", id, ip, hostPort, strings.Join(hits, "\n"))
	}
}

var netipInvalid netip.Addr

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testDir is a berth-test-* temp directory removed at the end of the test.
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
