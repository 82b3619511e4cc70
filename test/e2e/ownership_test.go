package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

const sleeper = "name: %s\nimage: berth-test/busybox:latest\ncommand: [sleep, '600']\ninstances: 2\nstopGracePeriod: 1s\n"

// TestNodesOnOneHostKeepApart: a second berth on the same Docker host
// (another node) never adopts or removes the first one's containers, and a
// berth that lost its store removes only its own orphans.
func TestNodesOnOneHostKeepApart(t *testing.T) {
	a := startBerth(t)
	a.mustCLI("apply", "-f", writeSpec(t, strings.ReplaceAll(sleeper, "%s", "mine")), "--wait", "--timeout", "1m")
	idsA := containerIDs(a, "mine")

	b := startBerth(t) // fresh store, other node name, same engine
	b.mustCLI("apply", "-f", writeSpec(t, strings.ReplaceAll(sleeper, "%s", "theirs")), "--wait", "--timeout", "1m")
	idsB := containerIDs(b, "theirs")
	time.Sleep(2 * time.Second)
	for _, id := range idsA {
		if !inspectState(t, a, id).Running {
			t.Fatalf("node B stopped node A's container %s", id)
		}
	}
	if ev := b.mustCLI("events"); strings.Contains(ev, "OrphanRemoved") {
		t.Fatalf("node B removed workloads it does not own:\n%s", ev)
	}

	// Node B loses its store: its containers are now orphans of node B
	// only. After a restart on an empty store it removes them, and leaves
	// node A's alone.
	b.kill()
	if err := os.RemoveAll(b.dataDir); err != nil {
		t.Fatal(err)
	}
	b.start()
	eventually(t, time.Minute, "node B's orphans removed", func() bool { return len(b.containers("theirs")) == 0 })
	if ev := b.mustCLI("events"); strings.Count(ev, "OrphanRemoved") != len(idsB) {
		t.Fatalf("want %d OrphanRemoved events:\n%s", len(idsB), ev)
	}
	for _, id := range idsA {
		if !inspectState(t, a, id).Running {
			t.Fatalf("node B's orphan cleanup stopped node A's container %s", id)
		}
	}
	a.mustCLI("rm", "mine", "--wait", "--timeout", "1m")
}

// TestStopLeavesWorkloadsRunning: SIGTERM stops berth cleanly; the apps
// keep running and the next start adopts them without a restart.
func TestStopLeavesWorkloadsRunning(t *testing.T) {
	b := startBerth(t)
	b.mustCLI("apply", "-f", writeSpec(t, strings.ReplaceAll(sleeper, "%s", "steady")), "--wait", "--timeout", "1m")
	ids := containerIDs(b, "steady")
	started := startTimes(t, b, ids)
	b.stop()
	for _, id := range ids {
		if !inspectState(t, b, id).Running {
			t.Fatalf("container %s stopped with berth", id)
		}
	}
	b.start()
	eventually(t, 30*time.Second, "instances reattached", func() bool {
		return strings.Count(b.mustCLI("events", "--app", "steady"), "Reattached") == len(ids)
	})
	for id, ts := range startTimes(t, b, containerIDs(b, "steady")) {
		if ts != started[id] {
			t.Fatalf("container %s restarted across a clean stop", id)
		}
	}
	b.mustCLI("rm", "steady", "--wait", "--timeout", "1m")
}

// TestNamespaces: the same app name in two namespaces are two apps; each
// command acts on its own namespace only.
func TestNamespaces(t *testing.T) {
	b := startBerth(t)
	spec := writeSpec(t, "name: api\nimage: berth-test/busybox:latest\ncommand: [sleep, '600']\nstopGracePeriod: 1s\n")
	b.mustCLI("apply", "-f", spec, "--wait", "--timeout", "1m")
	b.mustCLI("apply", "-f", spec, "-n", "staging", "--wait", "--timeout", "1m")
	b.mustCLI("scale", "api", "2", "-n", "staging", "--wait", "--timeout", "1m")
	all := b.mustCLI("apps", "-A")
	if !strings.Contains(all, "default") || !strings.Contains(all, "staging") {
		t.Fatalf("apps -A:\n%s", all)
	}
	if n := len(b.instances("api")); n != 1 {
		t.Fatalf("default/api has %d instances, want 1", n)
	}
	b.mustCLI("rm", "api", "-n", "staging", "--wait", "--timeout", "1m")
	if out := b.mustCLI("apps", "-A"); strings.Contains(out, "staging") || !strings.Contains(out, "default") {
		t.Fatalf("after rm in staging:\n%s", out)
	}
	if n := len(b.containers("api")); n != 1 {
		t.Fatalf("%d containers left for api, want default's 1", n)
	}
	b.mustCLI("rm", "api", "--wait", "--timeout", "1m")
}
