package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

const mockSpec = `name: %s
driver: mock
image: mock/img
instances: %d
resources: {cpu: 0.05, memory: 8Mi}
`

const processSpec = `name: %s
driver: process
command: ["/bin/sleep", "100000"]
instances: %d
resources: {cpu: 0.05, memory: 16Mi}
`

// waitRunning waits until app has n active running instances, none on a
// node in skip, and returns them by node.
func (c *cluster) waitRunning(app string, n int, skip ...string) map[string][]model.Instance {
	c.t.Helper()
	var by map[string][]model.Instance
	c.eventually(90*time.Second, func() (bool, string) {
		var total int
		by, total = c.running(app)
		for _, s := range skip {
			if len(by[s]) > 0 {
				return false, fmt.Sprintf("%d still on %s", len(by[s]), s)
			}
		}
		active := 0
		for _, in := range c.instances(app) {
			if in.Active() {
				active++
			}
		}
		return total == n && active == n, fmt.Sprintf("%d running, %d active, want %d", total, active, n)
	})
	return by
}

// busiest returns the agent running the most instances of by.
func (c *cluster) busiest(by map[string][]model.Instance) *agentHost {
	var best *agentHost
	for _, h := range c.agents {
		if best == nil || len(by[h.name]) > len(by[best.name]) {
			best = h
		}
	}
	return best
}

func TestSpreadAndNodeLoss(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fmt.Sprintf(mockSpec, "web", 6))
	by := c.waitRunning("web", 6)
	for _, h := range c.agents {
		if len(by[h.name]) == 0 {
			t.Errorf("node %s got no instance: %v", h.name, by)
		}
	}
	lost := c.busiest(by)
	lost.proc.stop(syscall.SIGKILL) // the host is gone (mock workloads die with it)
	t0 := time.Now()
	c.waitRunning("web", 6, lost.name)
	t.Logf("replacements running %.1fs after node %s was lost", time.Since(t0).Seconds(), lost.name)
	if st := c.node(lost.name).Status; st != model.NodeDown {
		t.Fatalf("lost node is %s, want down", st)
	}
}

func TestPartitionHealsToExactCount(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fmt.Sprintf(mockSpec, "web", 6))
	by := c.waitRunning("web", 6)
	cut := c.busiest(by)
	before := by[cut.name]
	c.ip("-n", cut.netns, "link", "set", "eth0", "down")
	c.eventually(60*time.Second, func() (bool, string) {
		st := c.node(cut.name).Status
		return st == model.NodeDown, "node is " + st
	})
	c.waitRunning("web", 6, cut.name)
	c.ip("-n", cut.netns, "link", "set", "eth0", "up")
	// The agent comes back, finds its instances replaced and stops them;
	// the node is ready again only after steady heartbeats.
	c.eventually(90*time.Second, func() (bool, string) {
		evs, err := c.c.Events(context.Background(), client.EventFilter{App: "web"})
		if err != nil {
			return false, err.Error()
		}
		stopped := map[string]bool{}
		for _, e := range evs {
			if e.Reason == "Stopped" && e.Node == cut.name {
				stopped[e.Instance] = true
			}
		}
		for _, in := range before {
			if !stopped[in.ID] {
				return false, "the healed agent has not stopped " + in.ID
			}
		}
		return true, ""
	})
	c.eventually(90*time.Second, func() (bool, string) {
		st := c.node(cut.name).Status
		return st == model.NodeReady, "healed node is " + st
	})
	by = c.waitRunning("web", 6, cut.name)
	seen := map[string]bool{}
	for _, list := range by {
		for _, in := range list {
			if seen[in.ID] {
				t.Fatalf("instance %s runs twice", in.ID)
			}
			seen[in.ID] = true
		}
	}
}

func TestAgentAndServerRestartKeepWorkloads(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fmt.Sprintf(processSpec, "sleeper", 3))
	c.waitRunning("sleeper", 3)
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, in := range c.instances("sleeper") {
			if in.Active() {
				out[in.ID] = in.Status.ContainerID
			}
		}
		return out
	}
	want := snapshot()
	same := func(what string) {
		t.Helper()
		c.waitRunning("sleeper", 3)
		got := snapshot()
		for id, cid := range want {
			if got[id] != cid {
				t.Fatalf("after %s: instance %s has workload %q, had %q (restarted or replaced)", what, id, got[id], cid)
			}
		}
		for _, in := range c.instances("sleeper") {
			if in.Status.Restarts != 0 {
				t.Fatalf("after %s: instance %s restarted %d times", what, in.ID, in.Status.Restarts)
			}
		}
	}

	h := c.agents[0]
	h.proc.stop(syscall.SIGTERM)
	c.startAgent(h, "") // no token: the saved certificate is reused
	c.eventually(60*time.Second, func() (bool, string) {
		return strings.Contains(h.proc.logs.String(), "node registered"), "agent has not registered again"
	})
	same("an agent restart")

	c.server.stop(syscall.SIGTERM)
	time.Sleep(3 * time.Second) // agents notice and retry
	c.startServer()
	for _, a := range c.agents {
		hb := c.node(a.name).LastHeartbeat
		c.eventually(60*time.Second, func() (bool, string) {
			return c.node(a.name).LastHeartbeat.After(hb), a.name + " has not reconnected"
		})
	}
	same("a server restart")
	if !strings.Contains(c.agents[1].proc.logs.String(), "server unreachable") {
		t.Log("note: agent 1 did not log the outage")
	}
}

func TestDrainMovesInstancesOneAtATime(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fmt.Sprintf(mockSpec, "web", 6))
	by := c.waitRunning("web", 6)
	target := c.busiest(by)
	if _, err := c.c.NodeAction(context.Background(), target.name, "drain"); err != nil {
		t.Fatal(err)
	}
	minRunning := 6
	c.eventually(120*time.Second, func() (bool, string) {
		by, total := c.running("web")
		minRunning = min(minRunning, total)
		n := c.node(target.name)
		return len(by[target.name]) == 0 && !n.Draining && total == 6,
			fmt.Sprintf("%d left on %s, %d running, draining=%v", len(by[target.name]), target.name, total, n.Draining)
	})
	if minRunning < 5 {
		t.Fatalf("during the drain only %d of 6 instances ran; drain must move one at a time", minRunning)
	}
	if !c.node(target.name).Cordoned {
		t.Fatal("drained node is not cordoned")
	}
}

func TestJoinRefusals(t *testing.T) {
	c := newCluster(t, 1)
	h := c.agents[0]
	join := func(token, node string) string {
		t.Helper()
		args := c.agentArgs(&agentHost{netns: h.netns, name: node, dataDir: filepath.Join(c.dir, "join-"+node)}, token)
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		if err == nil {
			t.Fatalf("agent with token %q as %s was accepted:\n%s", token, node, out)
		}
		return string(out)
	}
	good := c.token("1h")
	for _, tc := range []struct{ name, token, node, want string }{
		{"malformed", "berth-join-nonsense", "x1", "malformed join token"},
		{"wrong secret", good[:len(good)-4] + "0000", "x2", "secret does not match"},
		{"duplicate name", good, h.name, "is held by another agent"},
	} {
		if out := join(tc.token, tc.node); !strings.Contains(out, tc.want) {
			t.Errorf("%s: want %q in:\n%s", tc.name, tc.want, out)
		}
	}
	expiring := c.token("1s")
	time.Sleep(1500 * time.Millisecond)
	if out := join(expiring, "x3"); !strings.Contains(out, "expired") {
		t.Errorf("expired: %s", out)
	}
	revoked := c.token("1h")
	if err := c.c.RevokeToken(context.Background(), strings.Split(revoked, ".")[1]); err != nil {
		t.Fatal(err)
	}
	if out := join(revoked, "x4"); !strings.Contains(out, "revoked") {
		t.Errorf("revoked: %s", out)
	}
}

// agentStore is a remote store with an agent's saved certificate.
func agentStore(t *testing.T, c *cluster, h *agentHost) *remote.Store {
	t.Helper()
	dir := filepath.Join(h.dataDir, "agent")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	s := remote.New(remote.Options{Server: c.url, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}, Session: true})
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAgentCertificateConfinedToItsNode(t *testing.T) {
	c := newCluster(t, 2)
	c.apply(fmt.Sprintf(mockSpec, "web", 2))
	by := c.waitRunning("web", 2)
	a, b := c.agents[0], c.agents[1]
	s := agentStore(t, c, a)
	ctx := context.Background()

	// Its own node object: allowed. Another node's: 403.
	if _, err := store.Update(ctx, s, model.NodeKey(a.name), func(n *model.Node) error { n.Address = a.addr; return nil }); err != nil {
		t.Fatalf("own node: %v", err)
	}
	other, err := store.GetJSON[model.Node](ctx, c.adminStore(t), model.NodeKey(b.name))
	if err != nil {
		t.Fatal(err)
	}
	other.Value.Labels = map[string]string{"owned": "by-a"}
	if _, err := store.PutJSON(ctx, s, model.NodeKey(b.name), other.Value, other.ModRev); !remote.IsForbidden(err) {
		t.Fatalf("writing node %s with %s's certificate: %v, want 403", b.name, a.name, err)
	}
	// Another node's instance: 403; reading it too.
	if len(by[b.name]) == 0 {
		t.Fatalf("no instance on %s: %v", b.name, by)
	}
	key := by[b.name][0].Key()
	if _, err := store.Update(ctx, s, key, func(in *model.Instance) error { in.Status.Message = "x"; return nil }); !remote.IsForbidden(err) {
		t.Fatalf("writing %s's instance: %v, want 403", b.name, err)
	}
	// Its own instance: only the status may change.
	own := by[a.name][0].Key()
	if _, err := store.Update(ctx, s, own, func(in *model.Instance) error { in.Node = b.name; return nil }); !remote.IsForbidden(err) {
		t.Fatalf("moving its instance to another node: %v, want 403", err)
	}
	// Admin-only data: 403.
	if _, _, err := s.List(ctx, model.PrefixApps); !remote.IsForbidden(err) {
		t.Fatalf("listing apps: %v, want 403", err)
	}
	var apiErr *remote.Error
	_, err = s.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(model.NodeKey(b.name))}})
	if !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Fatalf("deleting another node: %v, want 403", err)
	}
}

// adminStore is a remote store with the admin token.
func (c *cluster) adminStore(t *testing.T) *remote.Store {
	t.Helper()
	b, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	var ctx struct{ Server, Token, CA string }
	if err := json.Unmarshal(b, &ctx); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ctx.CA))
	s := remote.New(remote.Options{Server: ctx.Server, Token: ctx.Token, TLS: &tls.Config{RootCAs: pool}})
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAgentRenewsItsCertificate(t *testing.T) {
	c := newClusterWith(t, 1, []string{"--agent-cert-ttl", "30s"})
	h := c.agents[0]
	certPath := filepath.Join(h.dataDir, "agent", "node.crt")
	first, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	// Renewal is due at 2/3 of the 30s lifetime; wait for two, so the
	// renewed certificate is itself used to renew.
	c.eventually(90*time.Second, func() (bool, string) {
		n := strings.Count(h.proc.logs.String(), "certificate renewed")
		return n >= 2, fmt.Sprintf("%d renewals", n)
	})
	now, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(now) == string(first) {
		t.Fatal("node.crt did not change")
	}
	// The agent still heartbeats with the renewed certificate (the first
	// one has expired by now).
	hb := c.node(h.name).LastHeartbeat
	c.eventually(30*time.Second, func() (bool, string) {
		return c.node(h.name).LastHeartbeat.After(hb), "no heartbeat after renewal"
	})
}

// Clock skew between hosts does not mark healthy nodes down: one agent's
// clock runs 30 minutes behind, another's 2 hours ahead (their heartbeat
// stamps and TLS checks use it); both stay ready past the down grace and
// nothing is replaced.
func TestClockSkewKeepsNodesReady(t *testing.T) {
	c := newCluster(t, 0)
	skews := []string{"-30m", "2h"}
	token := c.token("1h")
	for i, skew := range skews {
		h := c.addHost(i)
		c.startAgent(h, token, "--clock-skew", skew)
	}
	c.waitNodes(len(skews))
	c.apply(fmt.Sprintf(mockSpec, "steady", 4))
	before := c.waitRunning("steady", 4)
	// Past unreachable (5s) and down (10s) several times over.
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range c.agents {
			if n := c.node(h.name); n.Status != model.NodeReady {
				t.Fatalf("node %s with a skewed clock is %s", h.name, n.Status)
			}
		}
		time.Sleep(time.Second)
	}
	after := c.waitRunning("steady", 4)
	for node, list := range before {
		for i, in := range list {
			if len(after[node]) <= i || after[node][i].ID != in.ID {
				t.Fatalf("instances changed under clock skew: before %v, after %v", before, after)
			}
		}
	}
}
