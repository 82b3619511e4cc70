package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// pinnedSpec is a process app of n instances on node NODE only; it
// sleeps (its own network namespace on the node network is what counts).
const pinnedSpec = `name: %s
driver: process
command: ["/bin/busybox", "sleep", "3600"]
instances: %d
constraints: [{field: hostname, op: IS, value: %s}]
resources: {cpu: 0.05, memory: 16Mi}
stopGracePeriod: 1s
`

// nslookup asks the name server at server for name's A records from
// inside netns and returns the addresses, sorted.
func nslookup(t *testing.T, netns, name string, server netip.Addr) ([]string, string) {
	t.Helper()
	out, _ := inNetNS(netns, 5, "nslookup", "-type=a", name, server.String())
	var ips []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Address:" && !strings.HasSuffix(f[1], ":53") {
			ips = append(ips, f[1])
		}
	}
	sort.Strings(ips)
	return ips, out
}

// Node DNS runs on agent nodes, fed by the server's cluster view: an
// instance on host A resolves <app>.<namespace>.berth of an app whose
// instances run on host B (through node DNS on A's node network
// gateway), and the answer follows B's instances as they come and go.
func TestNodeDNSOnAgents(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatal("/bin/busybox is missing: run scripts/deps.sh")
	}
	c := newClusterNet(t, 2, true, []string{"--cluster-cidr", "10.96.0.0/16", "--node-subnet-size", "24"})
	a, b := c.agents[0], c.agents[1]
	var subnetA string
	c.eventually(60*time.Second, func() (bool, string) {
		subnetA = c.node(a.name).Subnet
		return subnetA != "" && c.node(b.name).Subnet != "", "node subnets not allocated yet"
	})
	_, gwA, err := model.NativeSubnet(subnetA)
	if err != nil {
		t.Fatal(err)
	}

	c.apply(fmt.Sprintf(pinnedSpec, "probe", 1, a.name))
	probe := c.waitRunning("probe", 1)[a.name]
	if len(probe) != 1 {
		t.Fatalf("probe not on %s", a.name)
	}
	ns := c.netnsOf(a, probe[0].Status.IP)

	// want waits until A's node DNS answers with the addresses of db's
	// running instances (all on B).
	want := func(n int) {
		t.Helper()
		var wantIPs []string
		c.eventually(90*time.Second, func() (bool, string) {
			by, total := c.running("db")
			if total != n || len(by[b.name]) != n {
				return false, fmt.Sprintf("%d of %d db instances running on %s", len(by[b.name]), n, b.name)
			}
			wantIPs = wantIPs[:0]
			for _, in := range by[b.name] {
				wantIPs = append(wantIPs, in.Status.IP.String())
			}
			sort.Strings(wantIPs)
			got, out := nslookup(t, ns, "db.default.berth", gwA)
			return fmt.Sprint(got) == fmt.Sprint(wantIPs), fmt.Sprintf("A's node DNS answers %v, want %v:\n%s", got, wantIPs, out)
		})
	}
	c.apply(fmt.Sprintf(pinnedSpec, "db", 1, b.name))
	want(1)
	c.apply(fmt.Sprintf(pinnedSpec, "db", 2, b.name))
	want(2)
	c.apply(fmt.Sprintf(pinnedSpec, "db", 0, b.name))
	want(0)
	if got, out := nslookup(t, ns, "nosuchapp.default.berth", gwA); len(got) != 0 || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("unknown app: %v\n%s", got, out)
	}
}
