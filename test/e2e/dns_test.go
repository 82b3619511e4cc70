package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// dnsClientSpec is an oci app that, every 300ms, looks up the server app
// through node DNS (its resolv.conf): by its full name (LOOKUP), by its
// short name through the search list (SHORT), and fetches it from the
// first address found (HTTP, with nc: the test image's static busybox
// wget crashes without glibc's NSS modules). It binds the server app, and
// prints the bound address variable (ENV).
const dnsClientSpec = `name: %[1]s
image: %[2]s
driver: oci
command: ["sh", "-c", "while true; do echo \"LOOKUP $(nslookup -type=a %[3]s.default.berth 2>&1 | awk '/^Address: /{print $2}' | sort | tr '\\n' ' ')END\"; ip=$(nslookup -type=a %[3]s 2>&1 | awk '/^Address: /{print $2}' | head -1); echo \"SHORT $ip\"; echo \"HTTP $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 8080 2>&1 | tail -1)\"; echo \"ENV $%[4]s_ADDR\"; sleep 0.3; done"]
bind: [{app: %[3]s, port: http, env: %[4]s}]
resources: {cpu: 0.1, memory: 32Mi}
stopGracePeriod: 1s
`

// lastLine returns the last line of logs starting with prefix.
func lastLine(logs, prefix string) string {
	last := ""
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, prefix) {
			last = l
		}
	}
	return last
}

// serverIPs are the addresses of app's running instances, as
// "LOOKUP a b END".
func serverLookupLine(t *testing.T, b *berth, app string) string {
	t.Helper()
	var ips []string
	for _, in := range b.instances(app) {
		if !in.Status.IP.IsValid() {
			t.Fatalf("instance %s has no address in its status: %+v", in.ID, in.Status)
		}
		ips = append(ips, in.Status.IP.String())
	}
	sort.Strings(ips)
	if len(ips) == 0 {
		return "LOOKUP END"
	}
	return "LOOKUP " + strings.Join(ips, " ") + " END"
}

// TestNodeDNS: an oci app resolves another by name from inside its
// container through node DNS, and the answer follows the server app as
// it scales 1 → 2 → 0; the host resolves it on --dns-listen; unknown
// apps are NXDOMAIN.
func TestNodeDNS(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushBusybox(t, "berth-test/busybox:1")
	hostDNS := freePort(t)
	b := startBerth(t, "--dns-listen", hostDNS, "--no-dns-docker")

	srv := "srv-" + randHex(3)
	cli := "cli-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, srv, ref, "runc", "hello", 1)), "--wait", "--timeout", "2m")
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(dnsClientSpec, cli, ref, srv, "SRV")), "--wait", "--timeout", "2m")
	if ps := b.mustCLI("ps", srv); !strings.Contains(ps, b.instances(srv)[0].Status.IP.String()) {
		t.Fatalf("berth ps does not show the instance's address:\n%s", ps)
	}

	waitLookup := func(want string) {
		t.Helper()
		var logs string
		eventually(t, 60*time.Second, "the client app to resolve "+want, func() bool {
			logs, _ = b.cli("logs", cli, "--tail", "20")
			return lastLine(logs, "LOOKUP ") == want
		})
	}
	waitLookup(serverLookupLine(t, b, srv))
	one := b.instances(srv)[0]
	eventually(t, 60*time.Second, "the client app to find the server by its short name and fetch from it", func() bool {
		logs, _ := b.cli("logs", cli, "--tail", "20")
		return lastLine(logs, "SHORT ") == "SHORT "+one.Status.IP.String() && lastLine(logs, "HTTP ") == "HTTP hello from "+one.ID
	})
	logs := b.mustCLI("logs", cli, "--tail", "5")
	if got, want := lastLine(logs, "ENV "), "ENV "+srv+".default.berth:8080"; got != want {
		t.Errorf("bound variable: %q, want %q", got, want)
	}

	b.mustCLI("scale", srv, "2", "--wait", "--timeout", "2m")
	two := serverLookupLine(t, b, srv)
	if strings.Count(two, ".") != 6 {
		t.Fatalf("want two addresses, got %q", two)
	}
	waitLookup(two)
	hostQuery := func(name string, qtype uint16) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(m, hostDNS)
		if err != nil {
			t.Fatalf("query %s on %s: %v", name, hostDNS, err)
		}
		return r
	}
	ep := b.mustCLI("endpoints", srv)
	for _, in := range b.instances(srv) {
		for _, want := range []string{in.Status.IP.String(), in.ID + "." + srv + ".default.berth.",
			"_http._tcp." + srv + ".default.berth."} {
			if !strings.Contains(ep, want) {
				t.Errorf("berth endpoints lacks %q:\n%s", want, ep)
			}
		}
	}
	if !strings.Contains(ep, "NAME "+srv+".default.berth.  (2 ready, 0 not ready)") {
		t.Errorf("berth endpoints:\n%s", ep)
	}
	if r := hostQuery(srv+".default.berth.", mdns.TypeA); len(r.Answer) != 2 {
		t.Errorf("host query: %v, want 2 A records", r)
	}
	if r := hostQuery("_http._tcp."+srv+".default.berth.", mdns.TypeSRV); len(r.Answer) != 2 || r.Answer[0].(*mdns.SRV).Port != 8080 {
		t.Errorf("host SRV query: %v, want 2 records with port 8080", r)
	}
	if r := hostQuery("nosuchapp.default.berth.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("unknown app: rcode %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}

	b.mustCLI("scale", srv, "0", "--wait", "--timeout", "2m")
	waitLookup("LOOKUP END")
	if r := hostQuery(srv+".default.berth.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("app scaled to 0: %v, want NOERROR with no records", r)
	}
}
