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
