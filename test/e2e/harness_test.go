// Package e2e tests the built berth binary end to end on the real Docker
// Engine: `berth up`, the CLI, and the containers it runs.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

// binary is the berth binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-test-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/berth")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build berth:", err)
		return 1
	}
	if err := ensureImage(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if os.Getenv("CI") == "true" {
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping e2e tests: Docker or the test image is unavailable")
		return 0
	}
	return m.Run()
}

// ensureImage builds berth-test/busybox:latest with the project script.
func ensureImage() error {
	cmd := exec.Command("bash", "../../scripts/test-image.sh")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/test-image.sh: %w", err)
	}
	return nil
}

// berth is one `berth up` process with its own data dir, port, node name
// and CLI context, and a client for it.
type berth struct {
	t       *testing.T
	dataDir string
	config  string
	listen  string
	node    string
	ports   string // host port range, away from a developer's own berth
	// bridge and subnet are this berth's own node network, so parallel
	// berths never share a bridge or an address range.
	bridge string
	subnet string
	// cluster is its --cluster-cidr, one node subnet (10.212.x.0/24):
	// its docker half is the berth Docker network, named like bridge.
	cluster string
	// extra are more `berth up` flags.
	extra  []string
	cmd    *exec.Cmd
	logs   *syncBuffer
	c      *client.Client
	docker *dockerclient.Client
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testPortRange picks a random 100-port block in 21000-29999 so test
// instances do not collide with a berth running on the same host.
func testPortRange() string {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	from := 21000 + int(b[0]%90)*100
	return fmt.Sprintf("%d-%d", from, from+99)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startBerth runs `berth up` and waits until its API answers. Cleanup
// removes the apps it runs, kills it, removes every container it labelled
// for this test and tears down its native workloads and node network.
func startBerth(t *testing.T, extraFlags ...string) *berth {
	t.Helper()
	dir := t.TempDir()
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b := &berth{t: t, dataDir: filepath.Join(dir, "data"), config: filepath.Join(dir, "context.json"),
		listen: freePort(t), node: "berth-test-" + randHex(4), docker: dc, ports: testPortRange(),
		bridge: "berth-test-" + randHex(2), subnet: testSubnet(), extra: extraFlags}
	b.cluster = strings.Replace(b.subnet, "10.218.", "10.212.", 1)
	t.Cleanup(func() {
		b.removeApps()
		b.kill()
		b.removeContainers()
		_ = dc.NetworkRemove(context.Background(), b.bridge) // the berth Docker network
		b.purgeNative()
		dc.Close()
		if t.Failed() {
			t.Logf("berth up output:\n%s", b.logs.String())
		}
	})
	b.start()
	return b
}

func (b *berth) start() {
	b.t.Helper()
	b.logs = &syncBuffer{}
	b.cmd = exec.Command(binary, "up", "--data-dir", b.dataDir, "--listen", b.listen, "--node-name", b.node,
		"--workload-label", "berth.test=1", "--log-level", "debug", "--port-range", b.ports,
		"--bridge", b.bridge, "--bridge-subnet", b.subnet, "--router-listen", "127.0.0.1:0",
		"--docker-network", b.bridge, "--cluster-cidr", b.cluster, "--node-subnet-size", "24")
	b.cmd.Args = append(b.cmd.Args, b.extra...)
	b.cmd.Env = append(os.Environ(), "BERTH_CONFIG="+b.config)
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ctxFile, err := os.ReadFile(b.config); err == nil {
			var c struct{ Server, Token string }
			if json.Unmarshal(ctxFile, &c) == nil && c.Server != "" {
				b.c = client.New(c.Server, c.Token)
				if _, err := b.c.Version(context.Background()); err == nil {
					return
				}
			}
		}
		if b.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("berth up did not come up; output:\n%s", b.logs.String())
}

// stop stops berth with SIGTERM, as an operator would, and waits.
func (b *berth) stop() {
	b.t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			b.t.Fatalf("berth up exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		b.t.Fatal("berth up did not exit within 30s of SIGTERM")
	}
}

// kill stops berth with SIGKILL, as a crash would.
func (b *berth) kill() {
	if b.cmd != nil && b.cmd.Process != nil && b.cmd.ProcessState == nil {
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
		_ = b.cmd.Wait()
	}
}

// cli runs the berth CLI against this server and returns its output.
func (b *berth) cli(args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+b.config)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustCLI runs the CLI and fails the test on a non-zero exit.
func (b *berth) mustCLI(args ...string) string {
	b.t.Helper()
	out, err := b.cli(args...)
	if err != nil {
		b.t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// containers lists this test's containers, optionally of one app.
func (b *berth) containers(app string) []container.Summary {
	b.t.Helper()
	f := filters.NewArgs(filters.Arg("label", "berth.test=1"), filters.Arg("label", "berth.node="+b.node))
	if app != "" {
		f.Add("label", "berth.app="+app)
	}
	list, err := b.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
	if err != nil {
		b.t.Fatal(err)
	}
	return list
}

func (b *berth) removeContainers() {
	f := filters.NewArgs(filters.Arg("label", "berth.test=1"), filters.Arg("label", "berth.node="+b.node))
	list, err := b.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = b.docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
}

// writeSpec writes a spec file into the test's temp dir.
func writeSpec(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// instances returns the app's active instances.
func (b *berth) instances(app string) []model.Instance {
	b.t.Helper()
	list, err := b.c.Instances(context.Background(), model.DefaultNamespace, app)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []model.Instance
	for _, in := range list {
		if in.Active() {
			out = append(out, in)
		}
	}
	return out
}

// get fetches http://127.0.0.1:port/ and returns the body.
func get(t *testing.T, port int) string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("GET port %d: %v", port, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET port %d: HTTP %d", port, resp.StatusCode)
	}
	return buf.String()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
