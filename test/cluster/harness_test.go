// Package cluster tests `berth server` and `berth agent` across real
// network hosts: every agent is its own process in its own network
// namespace, joined to the server over a veth pair on a private bridge
// the test creates (berth-test-*, 10.219.x.0/24). Needs root, ip and the
// built binary; with CI=true nothing skips.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/driver/process"
	"github.com/berth-dev/berth/internal/model"
)

var binary string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "the ip command"
	} else if _, err := exec.LookPath("nsenter"); err != nil {
		missing = "nsenter (util-linux)"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "cluster tests need", missing)
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping cluster tests: they need", missing)
		return 0
	}
	dir, err := os.MkdirTemp("", "berth-test-cluster-bin-")
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
	return m.Run()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// proc is a process the test started, stopped by its PID only.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

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

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop signals the process and waits for it (SIGKILL after 30s).
func (p *proc) stop(sig syscall.Signal) {
	if p == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cluster is one server on the host side of a private bridge and agents
// in their own network namespaces.
type cluster struct {
	t       *testing.T
	id      string
	bridge  string
	subnet  int // third octet of 10.219.x.0/24
	dir     string
	config  string
	server  *proc
	srvData string
	listen  string
	url     string
	c       *client.Client
	agents  []*agentHost
	// serverFlags are extra `berth server` flags.
	serverFlags []string
	// nodeNetwork: agents run the node network (CNI bridge, VXLAN
	// overlay) instead of --no-node-network.
	nodeNetwork bool
}

// agentHost is one simulated host: a netns with a veth to the bridge.
type agentHost struct {
	name    string // node name
	netns   string
	veth    string // host side
	addr    string
	dataDir string
	proc    *proc
}

func (c *cluster) ip(args ...string) {
	c.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newCluster makes the bridge, n agent hosts, starts the server and the
// agents (with extra agent flags), and waits until every node is ready.
func newCluster(t *testing.T, n int, agentFlags ...string) *cluster {
	t.Helper()
	return newClusterWith(t, n, nil, agentFlags...)
}

// newClusterWith is newCluster with extra `berth server` flags.
func newClusterWith(t *testing.T, n int, serverFlags []string, agentFlags ...string) *cluster {
	t.Helper()
	return newClusterNet(t, n, false, serverFlags, agentFlags...)
}

// newClusterNet is newClusterWith whose agents run the node network if
// nodeNetwork is set.
func newClusterNet(t *testing.T, n int, nodeNetwork bool, serverFlags []string, agentFlags ...string) *cluster {
	t.Helper()
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	c := &cluster{t: t, id: randHex(2), subnet: int(b[0]), dir: t.TempDir(), serverFlags: serverFlags, nodeNetwork: nodeNetwork}
	c.bridge = "berth-test-" + c.id
	c.config = filepath.Join(c.dir, "context.json")
	c.srvData = filepath.Join(c.dir, "server")
	c.listen = fmt.Sprintf("10.219.%d.1:%d", c.subnet, 17000+int(b[0]))
	t.Cleanup(c.teardown)
	c.ip("link", "add", c.bridge, "type", "bridge")
	c.ip("addr", "add", fmt.Sprintf("10.219.%d.1/24", c.subnet), "dev", c.bridge)
	c.ip("link", "set", c.bridge, "up")
	if nodeNetwork {
		c.allowBridging()
	}
	for i := 0; i < n; i++ {
		c.addHost(i)
	}
	c.startServer()
	token := c.token("1h")
	for _, h := range c.agents {
		c.startAgent(h, token, agentFlags...)
	}
	c.waitNodes(n)
	return c
}

// forwardRule lets frames bridged between the agent hosts pass the
// host's FORWARD chain (br_netfilter hands them to iptables, and Docker
// sets its policy to DROP), so agents reach each other, not just the
// server. Removed at teardown.
func (c *cluster) forwardRule() []string {
	return []string{"FORWARD", "-i", c.bridge, "-o", c.bridge, "-m", "comment", "--comment", "berth-test", "-j", "ACCEPT"}
}

func (c *cluster) allowBridging() {
	c.t.Helper()
	if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, c.forwardRule()...)...).CombinedOutput(); err != nil {
		c.t.Fatalf("iptables: %v: %s", err, out)
	}
	c.t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-w", "-D"}, c.forwardRule()...)...).Run() })
}

// addHost makes agent host i: a network namespace with a veth on the
// test bridge and address 10.219.<subnet>.<10+i>. Its agent is not started.
func (c *cluster) addHost(i int) *agentHost {
	c.t.Helper()
	h := &agentHost{name: fmt.Sprintf("berth-test-%s-n%d", c.id, i), netns: fmt.Sprintf("berth-test-%s-%d", c.id, i),
		veth: fmt.Sprintf("berth-test-%s%d", c.id[:2], i), addr: fmt.Sprintf("10.219.%d.%d", c.subnet, 10+i),
		dataDir: filepath.Join(c.dir, fmt.Sprintf("agent%d", i))}
	c.agents = append(c.agents, h)
	peer := fmt.Sprintf("berth-test-%sp%d", c.id[:2], i)
	c.ip("netns", "add", h.netns)
	c.ip("link", "add", h.veth, "type", "veth", "peer", "name", peer)
	c.ip("link", "set", h.veth, "master", c.bridge, "up")
	c.ip("link", "set", peer, "netns", h.netns)
	c.ip("-n", h.netns, "link", "set", peer, "name", "eth0")
	c.ip("-n", h.netns, "addr", "add", h.addr+"/24", "dev", "eth0")
	c.ip("-n", h.netns, "link", "set", "eth0", "up")
	c.ip("-n", h.netns, "link", "set", "lo", "up")
	return h
}

func (c *cluster) startServer() {
	c.t.Helper()
	_ = os.Remove(c.config)
	args := append([]string{"server", "--data-dir", c.srvData, "--listen", c.listen, "--log-level", "debug"}, c.serverFlags...)
	c.server = start(c.t, []string{"BERTH_CONFIG=" + c.config}, binary, args...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && c.server.running() {
		if b, err := os.ReadFile(c.config); err == nil {
			var ctx struct{ Server, Token, CA string }
			if json.Unmarshal(b, &ctx) == nil && ctx.CA != "" {
				cl, err := client.NewTLS(ctx.Server, ctx.Token, []byte(ctx.CA))
				if err != nil {
					c.t.Fatal(err)
				}
				if _, err := cl.Version(context.Background()); err == nil {
					c.c, c.url = cl, ctx.Server
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("berth server did not come up:\n%s", c.server.logs.String())
}

// token makes a join token.
func (c *cluster) token(ttl string) string {
	c.t.Helper()
	tok, err := c.c.CreateToken(context.Background(), ttl, "test")
	if err != nil {
		c.t.Fatal(err)
	}
	return tok.Token
}

// agentArgs are nsenter's arguments to run `berth agent` inside h's
// network namespace. nsenter, not `ip netns exec`: the latter remounts
// /sys for the namespace, which hides /sys/fs/cgroup from the process
// driver. Both exec the binary, so the PID is the agent's.
func (c *cluster) agentArgs(h *agentHost, token string, extra ...string) []string {
	args := []string{"--net=/var/run/netns/" + h.netns, binary, "agent", "--server", c.url, "--data-dir", h.dataDir,
		"--node-name", h.name, "--no-docker", "--mock-driver-images", "mock/img",
		"--workload-label", "berth.test=1", "--log-level", "debug"}
	if !c.nodeNetwork {
		args = append(args, "--no-node-network")
	}
	if token != "" {
		args = append(args, "--join-token", token)
	}
	return append(args, extra...)
}

func (c *cluster) startAgent(h *agentHost, token string, extra ...string) {
	c.t.Helper()
	h.proc = start(c.t, nil, "nsenter", c.agentArgs(h, token, extra...)...)
}

// waitNodes waits until n nodes are ready.
func (c *cluster) waitNodes(n int) {
	c.t.Helper()
	c.eventually(60*time.Second, func() (bool, string) {
		nodes, err := c.c.Nodes(context.Background())
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, nd := range nodes {
			if nd.Status == model.NodeReady {
				ready++
			}
		}
		return ready >= n, fmt.Sprintf("%d of %d nodes ready", ready, n)
	})
}

// eventually polls cond every 200ms until it holds or timeout (which
// only stops a hung test) passes.
func (c *cluster) eventually(timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("condition not met within %s: %s", timeout, last)
}

func (c *cluster) apply(spec string) {
	c.t.Helper()
	if _, err := c.c.Apply(context.Background(), "", []byte(spec)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) instances(app string) []model.Instance {
	c.t.Helper()
	list, err := c.c.Instances(context.Background(), "", app)
	if err != nil {
		c.t.Fatal(err)
	}
	return list
}

// running returns the active running instances of app by node.
func (c *cluster) running(app string) (map[string][]model.Instance, int) {
	byNode := map[string][]model.Instance{}
	n := 0
	for _, in := range c.instances(app) {
		if in.Active() && in.Status.State == model.StateRunning {
			byNode[in.Node] = append(byNode[in.Node], in)
			n++
		}
	}
	return byNode, n
}

func (c *cluster) node(name string) model.Node {
	c.t.Helper()
	n, err := c.c.Node(context.Background(), name)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// teardown removes everything the test made, even after a failure.
func (c *cluster) teardown() {
	if c.c != nil && c.server != nil && c.server.running() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if apps, err := c.c.ListApps(ctx, "", true); err == nil {
			for _, a := range apps {
				_ = c.c.DeleteApp(ctx, a.Namespace, a.Name)
			}
			for ctx.Err() == nil {
				if left, err := c.c.ListApps(ctx, "", true); err != nil || len(left) == 0 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		cancel()
	}
	for _, h := range c.agents {
		h.proc.stop(syscall.SIGKILL)
		if c.t.Failed() && h.proc != nil {
			c.t.Logf("agent %s output:\n%s", h.name, tail(h.proc.logs.String(), 60))
		}
		purgeProcesses(c.t, h.dataDir)
		removeWorkloadNetNS(h.dataDir)
	}
	c.server.stop(syscall.SIGTERM)
	if c.t.Failed() && c.server != nil {
		c.t.Logf("server output:\n%s", tail(c.server.logs.String(), 80))
	}
	for _, h := range c.agents {
		_ = exec.Command("ip", "netns", "del", h.netns).Run()
		_ = exec.Command("ip", "link", "del", h.veth).Run()
	}
	_ = exec.Command("ip", "link", "del", c.bridge).Run()
}

// purgeProcesses removes the process-driver workloads an agent left,
// through the driver over the agent's own state.
func purgeProcesses(t *testing.T, dataDir string) {
	stateDir := filepath.Join(dataDir, "process")
	if _, err := os.Stat(stateDir); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := process.New(process.Options{StateDir: stateDir})
	list, _ := d.List(ctx)
	for _, w := range list {
		if err := d.Remove(ctx, w.ID); err != nil {
			t.Errorf("cleanup: remove process workload %s: %v", w.ID, err)
		}
	}
}

// removeWorkloadNetNS deletes the workload network namespaces (pinned
// in the host's /run/netns) an agent's node network left.
func removeWorkloadNetNS(dataDir string) {
	files, _ := filepath.Glob(filepath.Join(dataDir, "network", "attachments", "*.json"))
	for _, f := range files {
		var rec struct {
			NetNS string `json:"netns"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &rec) == nil && filepath.Dir(rec.NetNS) == "/run/netns" {
			_ = exec.Command("ip", "netns", "del", filepath.Base(rec.NetNS)).Run()
		}
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
