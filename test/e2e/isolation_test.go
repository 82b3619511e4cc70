package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// isoServerSpec is a process app of namespace %[2]s serving "iso-hello"
// on 8080 from dir %[3]s; %[4]s is more spec (allowFrom).
const isoServerSpec = `name: %[1]s
namespace: %[2]s
driver: process
command:
- /bin/busybox
- sh
- -c
- |
  mkdir -p %[3]s && echo iso-hello > %[3]s/index.html
  exec /bin/busybox httpd -f -p 8080 -h %[3]s
resources: {cpu: 0.1, memory: 32Mi}
ports: [{name: http, containerPort: 8080}]
health: {tcp: {port: http}, interval: 1s}
stopGracePeriod: 1s
%[4]s`

// isoClientSpec is a process app of namespace %[2]s that, every 300ms,
// fetches port 8080 of the address in file %[3]s (nc gives up after 2s)
// and prints "TRY <n> <last line of the answer>".
const isoClientSpec = `name: %[1]s
namespace: %[2]s
driver: process
command:
- /bin/busybox
- sh
- -c
- |
  i=0
  while true; do
    i=$((i+1))
    ip=$(cat %[3]s)
    echo "TRY $i $(printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 2 $ip 8080 2>&1 | tail -1)"
    sleep 0.3
  done
resources: {cpu: 0.1, memory: 32Mi}
stopGracePeriod: 1s
`

// tries are a client's attempts so far, by number: whether it got the
// page.
func (b *berth) tries(ns, app string) map[int]bool {
	b.t.Helper()
	logs, _ := b.cli("logs", app, "-n", ns)
	out := map[int]bool{}
	for _, l := range strings.Split(logs, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "TRY" {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err == nil {
			out[n] = strings.HasSuffix(l, "iso-hello")
		}
	}
	return out
}

// lastTries reports whether the client made n tries after try from and
// whether all of them got the page (ok) or none did.
func lastTries(tries map[int]bool, from, n int) (enough, allOK, noneOK bool) {
	allOK, noneOK = true, true
	count := 0
	for i, ok := range tries {
		if i <= from {
			continue
		}
		count++
		allOK = allOK && ok
		noneOK = noneOK && !ok
	}
	return count >= n, allOK, noneOK
}

func maxTry(tries map[int]bool) int {
	m := 0
	for i := range tries {
		m = max(m, i)
	}
	return m
}

// startIsoServer applies isoServerSpec as app srv of ns and returns its
// one instance, which has an address.
func (b *berth) startIsoServer(ctx context.Context, ns, www string) model.Instance {
	b.t.Helper()
	b.mustCLI("apply", "-f", writeSpec(b.t, fmt.Sprintf(isoServerSpec, "srv", ns, www, "")), "--wait", "--timeout", "2m")
	srv, err := b.c.Instances(ctx, ns, "srv")
	if err != nil || len(srv) != 1 || !srv[0].Status.IP.IsValid() {
		b.t.Fatalf("server instances %+v, %v", srv, err)
	}
	return srv[0]
}

// expectIsolated waits until client peer of peerNS fetched 3 times in a
// row (tries after skip) and outsider of outNS tried 4 times, then fails
// if any of the outsider's tries got through.
func (b *berth) expectIsolated(peerNS, peer string, skip int, outNS, outsider string) {
	b.t.Helper()
	eventually(b.t, 60*time.Second, peer+" (same network) to fetch and "+outsider+" to make 4 tries", func() bool {
		enough, allOK, _ := lastTries(b.tries(peerNS, peer), skip, 3)
		enoughOut, _, _ := lastTries(b.tries(outNS, outsider), 0, 4)
		return enough && allOK && enoughOut
	})
	if _, _, noneOK := lastTries(b.tries(outNS, outsider), 0, 0); !noneOK {
		b.t.Fatalf("%s (other network) reached the server:\n%s", outsider, b.mustCLI("logs", outsider, "-n", outNS))
	}
}

// TestNetworkIsolation: process apps of two namespaces (two networks) on
// `berth up`. Inside a network HTTP works; across networks connections
// are dropped (they time out) while the host still reaches the published
// port; allowFrom on the server opens its network to the other one
// without a new revision, and removing it closes it again. A clean stop
// removes the nftables table.
func TestNetworkIsolation(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("needs /bin/busybox (apt-get install busybox-static): %v", err)
	}
	b := startBerth(t)
	nftTable := "berth-" + b.bridge
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")

	const shop, ops = "shop", "ops"
	srv := []model.Instance{b.startIsoServer(ctx, shop, filepath.Join(dir, "www"))}
	if err := os.WriteFile(target, []byte(srv[0].Status.IP.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	app, err := b.c.GetApp(ctx, shop, "srv")
	if err != nil {
		t.Fatal(err)
	}
	rev := app.Revision
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoClientSpec, "peer", shop, target)), "--wait", "--timeout", "2m")
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoClientSpec, "outsider", ops, target)), "--wait", "--timeout", "2m")

	// Same network: works. Other network: every try fails (from the first).
	b.expectIsolated(shop, "peer", 0, ops, "outsider")
	if body := get(t, srv[0].HostPorts["http"]); strings.TrimSpace(body) != "iso-hello" {
		t.Fatalf("published port from the host served %q", body)
	}
	listed, err := exec.Command("nft", "list", "table", "inet", nftTable).CombinedOutput()
	if err != nil || !strings.Contains(string(listed), srv[0].Status.IP.String()) {
		t.Fatalf("nft table %s: %v\n%s", nftTable, err, listed)
	}

	// Grant network ops: the outsider gets through, with no new revision.
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoServerSpec, "srv", shop, filepath.Join(dir, "www"),
		"allowFrom: [{network: ops}]\n")))
	from := maxTry(b.tries(ops, "outsider"))
	eventually(t, 30*time.Second, "outsider to fetch after allowFrom", func() bool {
		enough, allOK, _ := lastTries(b.tries(ops, "outsider"), from+3, 3)
		return enough && allOK
	})
	if app, err := b.c.GetApp(ctx, shop, "srv"); err != nil || app.Revision != rev {
		t.Fatalf("allowFrom made revision %d (was %d), %v", app.Revision, rev, err)
	}
	if now, _ := b.c.Instances(ctx, shop, "srv"); len(now) != 1 || now[0].ID != srv[0].ID {
		t.Fatalf("allowFrom replaced the server instance: %+v", now)
	}

	// Revoke: dropped again.
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoServerSpec, "srv", shop, filepath.Join(dir, "www"), "")))
	from = maxTry(b.tries(ops, "outsider"))
	eventually(t, 30*time.Second, "outsider to be dropped again after allowFrom is removed", func() bool {
		enough, _, noneOK := lastTries(b.tries(ops, "outsider"), from+2, 3)
		return enough && noneOK
	})
	if enough, allOK, _ := lastTries(b.tries(shop, "peer"), maxTry(b.tries(shop, "peer"))-3, 3); !enough || !allOK {
		t.Fatalf("peer lost the server:\n%s", b.mustCLI("logs", "peer", "-n", shop))
	}

	// Bad input names the field.
	out, err := b.cli("apply", "-f", writeSpec(t, fmt.Sprintf(isoServerSpec, "srv", shop, filepath.Join(dir, "www"),
		"allowFrom: [{network: Web}]\n")))
	if err == nil || !strings.Contains(out, "allowFrom[0].network") {
		t.Fatalf("bad allowFrom: err %v, output %s", err, out)
	}

	// A clean stop removes the table.
	b.stop()
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), nftTable) {
		t.Fatalf("table %s left after a clean stop: %v\n%s", nftTable, err, out)
	}

	// A restart rebuilds it from the store; the outsider stays dropped.
	b.start()
	eventually(t, 30*time.Second, "the table to be back after a restart", func() bool {
		out, err := exec.Command("nft", "list", "table", "inet", nftTable).CombinedOutput()
		return err == nil && strings.Contains(string(out), srv[0].Status.IP.String())
	})
	from = maxTry(b.tries(ops, "outsider")) + 1 // one may be in flight
	eventually(t, 30*time.Second, "outsider to make 3 more tries after the restart", func() bool {
		enough, _, _ := lastTries(b.tries(ops, "outsider"), from, 3)
		return enough
	})
	if _, _, noneOK := lastTries(b.tries(ops, "outsider"), from, 0); !noneOK {
		t.Fatalf("outsider reached the server after a restart:\n%s", b.mustCLI("logs", "outsider", "-n", ops))
	}
}

// isoDockerClientSpec is isoClientSpec as a docker app: every 300ms it
// fetches port 8080 of address %[3]s.
const isoDockerClientSpec = `name: %[1]s
namespace: %[2]s
image: berth-test/busybox:latest
command:
- sh
- -c
- |
  i=0
  while true; do
    i=$((i+1))
    echo "TRY $i $(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %[3]s 8080 2>&1 | tail -1)"
    sleep 0.3
  done
resources: {cpu: 0.1, memory: 32Mi}
stopGracePeriod: 1s
`

// TestIsolationCoversDockerContainers: docker containers (on the berth
// Docker network, the other half of the node subnet) are policed like
// native instances (the forward-hook policy sees the container's own
// address; Docker masquerades only later, in postrouting), so a container
// of another network is dropped and one of the same network gets through.
func TestIsolationCoversDockerContainers(t *testing.T) {
	b := startBerth(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const shop, ops = "shop", "ops"
	ip := b.startIsoServer(ctx, shop, filepath.Join(t.TempDir(), "www")).Status.IP.String()
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoDockerClientSpec, "dpeer", shop, ip)), "--wait", "--timeout", "2m")
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(isoDockerClientSpec, "doutsider", ops, ip)), "--wait", "--timeout", "2m")
	b.expectIsolated(shop, "dpeer", 1, ops, "doutsider")
}
