package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// isoAppSpec is a process app on node %[2]s in network %[3]s running
// %[4]s; %[5]s is more spec.
const isoAppSpec = `name: %[1]s
driver: process
network: %[3]s
command: %[4]s
constraints: [{field: hostname, op: IS, value: %[2]s}]
resources: {cpu: 0.05, memory: 16Mi}
%[5]s`

// Two hosts with the node network and the overlay. A server of network
// "back" on host B; on host A a client of "back" and one of "front".
// Across the overlay the same-network client gets through and the other
// is dropped at B (its connections time out); allowFrom on the server
// opens it to "front" and removing it closes it again.
func TestIsolationCrossHost(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatal("/bin/busybox is missing: run scripts/deps.sh")
	}
	c := newClusterNet(t, 2, true, []string{"--cluster-cidr", "10.94.0.0/16", "--node-subnet-size", "24"})
	a, b := c.agents[0], c.agents[1]
	srvCmd := fmt.Sprintf("[/bin/busybox, httpd, -f, -p, \"8080\", -h, %q]", webRoot(t, c.dir))
	sleep := "[/bin/busybox, sleep, \"3600\"]"
	c.apply(fmt.Sprintf(isoAppSpec, "srv", b.name, "back", srvCmd, ""))
	c.apply(fmt.Sprintf(isoAppSpec, "same", a.name, "back", sleep, ""))
	c.apply(fmt.Sprintf(isoAppSpec, "other", a.name, "front", sleep, ""))
	ip := func(app string) netip.Addr {
		by := c.waitRunning(app, 1)
		for _, list := range by {
			return list[0].Status.IP
		}
		return netip.Addr{}
	}
	srv := ip("srv")
	same, other := c.netnsOf(a, ip("same")), c.netnsOf(a, ip("other"))
	url := fmt.Sprintf("http://%s:8080/", srv)
	// fetch is one HTTP GET from netns, bounded to 3s.
	fetch := func(netns string) bool {
		out, err := inNetNS(netns, 3, "wget", "-q", "-O", "-", url)
		return err == nil && strings.Contains(out, "hello from berth")
	}
	// settled waits until three fetches in a row from netns give want.
	settled := func(netns, what string, want bool) {
		t.Helper()
		streak := 0
		c.eventually(60*time.Second, func() (bool, string) {
			if fetch(netns) == want {
				streak++
			} else {
				streak = 0
			}
			return streak >= 3, fmt.Sprintf("%s: %d fetches in a row as wanted (reachable=%v)", what, streak, want)
		})
	}

	settled(same, "same network across hosts", true)
	for range 3 { // B's table is loaded by now: none gets through
		if fetch(other) {
			t.Fatal("a client of another network reached the server across hosts")
		}
	}
	c.apply(fmt.Sprintf(isoAppSpec, "srv", b.name, "back", srvCmd, "allowFrom: [{network: front}]\n"))
	settled(other, "other network after allowFrom", true)
	c.apply(fmt.Sprintf(isoAppSpec, "srv", b.name, "back", srvCmd, ""))
	settled(other, "other network after allowFrom is removed", false)
	if !fetch(same) {
		t.Fatal("the same-network client lost the server")
	}
	if n := len(c.instances("srv")); n != 1 {
		t.Fatalf("allowFrom changes replaced the server: %d instances", n)
	}
}
