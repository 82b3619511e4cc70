package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

func app(ns, name string, health bool, ports ...model.PortSpec) model.App {
	a := model.App{Namespace: ns, Name: name, Spec: model.AppSpec{Name: name, Namespace: ns, Ports: ports}}
	if health {
		a.Spec.Health = &model.HealthCheck{TCP: &model.TCPCheck{Port: "http"}}
	}
	return a
}

func inst(ns, appName, id, state, health, ip string) model.Instance {
	in := model.Instance{ID: id, Namespace: ns, App: appName, Node: "n1", Desired: model.DesiredRun,
		HostPorts: map[string]int{"http": 20001},
		Status:    model.InstanceStatus{State: state, Health: health}}
	if ip != "" {
		in.Status.IP = netip.MustParseAddr(ip)
	}
	return in
}

var httpPort = model.PortSpec{Name: "http", ContainerPort: 8080, Protocol: "tcp"}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{model.AppDNSName("default", "web"), "web.default.berth."},
		{InstanceName("prod", "web", "web-1a2b3c4d"), "web-1a2b3c4d.web.prod.berth."},
		{InstanceName("prod", "web", "Not_A_Label"), ""},
		{SRVName("prod", "db", "pg", "tcp"), "_pg._tcp.db.prod.berth."},
		{SRVName("prod", "dns", "q", ""), "_q._tcp.dns.prod.berth."},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	for name, in := range map[string]bool{"web.default.berth.": true, "WEB.Default.BERTH.": true, "berth.": true,
		"example.com.": false, "berthx.": false, "berth.example.com.": false} {
		if InZone(name) != in {
			t.Errorf("InZone(%q) = %v", name, !in)
		}
	}
}

func TestAppEndpoints(t *testing.T) {
	down := model.Node{Name: "n2", Status: model.NodeDown}
	hostNode := model.Node{Name: "n3", Address: "192.0.2.7", Status: model.NodeReady}
	nodes := map[string]*model.Node{"n2": &down, "n3": &hostNode}
	onNode := func(in model.Instance, node string) model.Instance { in.Node = node; return in }
	stopping := inst("default", "web", "web-5", model.StateRunning, model.HealthHealthy, "10.0.0.5")
	stopping.Desired = model.DesiredStop
	for _, c := range []struct {
		name      string
		app       model.App
		insts     []model.Instance
		wantIPs   []string
		wantSRV   []int
		wantNotOK int
	}{
		{name: "running without health check", app: app("default", "web", false, httpPort),
			insts:   []model.Instance{inst("default", "web", "web-1", model.StateRunning, "", "10.0.0.1")},
			wantIPs: []string{"10.0.0.1"}, wantSRV: []int{8080}},
		{name: "health check: only healthy", app: app("default", "web", true, httpPort),
			insts: []model.Instance{inst("default", "web", "web-1", model.StateRunning, model.HealthHealthy, "10.0.0.1"),
				inst("default", "web", "web-2", model.StateRunning, model.HealthUnknown, "10.0.0.2"),
				inst("default", "web", "web-3", model.StateStarting, "", "")},
			wantIPs: []string{"10.0.0.1"}, wantSRV: []int{8080}, wantNotOK: 2},
		{name: "desired stop and down node left out", app: app("default", "web", false, httpPort),
			insts:   []model.Instance{stopping, onNode(inst("default", "web", "web-6", model.StateRunning, "", "10.0.0.6"), "n2")},
			wantIPs: []string{}, wantSRV: []int{}, wantNotOK: 1},
		{name: "no own address: node address and host port", app: app("default", "web", false, httpPort),
			insts:   []model.Instance{onNode(inst("default", "web", "web-7", model.StateRunning, "", ""), "n3")},
			wantIPs: []string{"192.0.2.7"}, wantSRV: []int{20001}},
		{name: "other apps ignored", app: app("default", "web", false, httpPort),
			insts:   []model.Instance{inst("default", "api", "api-1", model.StateRunning, "", "10.0.0.9"), inst("other", "web", "web-9", model.StateRunning, "", "10.0.0.8")},
			wantIPs: []string{}, wantSRV: []int{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ep := AppEndpoints(&c.app, c.insts, nodes)
			var ips []string
			for _, a := range ep.Addresses {
				ips = append(ips, a.IP.String())
			}
			var ports []int
			for _, s := range ep.SRV {
				ports = append(ports, s.Port)
				if s.Name != "_http._tcp.web.default.berth." || s.Target != InstanceName("default", "web", s.Instance) {
					t.Errorf("SRV %+v", s)
				}
			}
			if len(ips) != len(c.wantIPs) || len(ports) != len(c.wantSRV) || ep.NotReady != c.wantNotOK {
				t.Fatalf("ips %v srv %v notReady %d, want %v %v %d", ips, ports, ep.NotReady, c.wantIPs, c.wantSRV, c.wantNotOK)
			}
			for i := range ips {
				if ips[i] != c.wantIPs[i] {
					t.Errorf("ips %v, want %v", ips, c.wantIPs)
				}
			}
			for i := range ports {
				if ports[i] != c.wantSRV[i] {
					t.Errorf("srv ports %v, want %v", ports, c.wantSRV)
				}
			}
		})
	}
}

func TestZoneLookup(t *testing.T) {
	z := Build(table.Snapshot{Rev: 7,
		Apps: []model.App{app("default", "web", false, httpPort), app("default", "idle", false)},
		Instances: []model.Instance{
			inst("default", "web", "web-1", model.StateRunning, "", "10.0.0.1"),
			inst("default", "web", "web-2", model.StateRunning, "", "fd00::2"),
		}}, 0)
	count := func(a Answer, t uint16) int {
		n := 0
		for _, rr := range a.Answer {
			if rr.Header().Rrtype == t {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer int
		extra  int
	}{
		{"web.default.berth.", mdns.TypeA, mdns.RcodeSuccess, 1, 0},
		{"WEB.default.berth", mdns.TypeA, mdns.RcodeSuccess, 1, 0},
		{"web.default.berth.", mdns.TypeAAAA, mdns.RcodeSuccess, 1, 0},
		{"web-1.web.default.berth.", mdns.TypeA, mdns.RcodeSuccess, 1, 0},
		{"_http._tcp.web.default.berth.", mdns.TypeSRV, mdns.RcodeSuccess, 2, 2},
		{"idle.default.berth.", mdns.TypeA, mdns.RcodeSuccess, 0, 0}, // exists, nothing ready
		{"default.berth.", mdns.TypeA, mdns.RcodeSuccess, 0, 0},
		{"nope.default.berth.", mdns.TypeA, mdns.RcodeNameError, 0, 0},
		{"web.other.berth.", mdns.TypeA, mdns.RcodeNameError, 0, 0},
		{"berth.", mdns.TypeSOA, mdns.RcodeSuccess, 1, 0},
	} {
		a := z.Lookup(c.name, c.qtype)
		if a.Rcode != c.rcode || count(a, c.qtype) != c.answer || len(a.Answer) != c.answer || len(a.Extra) != c.extra {
			t.Errorf("%s %s: rcode %d answer %v extra %v, want rcode %d, %d answers, %d extra",
				c.name, mdns.TypeToString[c.qtype], a.Rcode, a.Answer, a.Extra, c.rcode, c.answer, c.extra)
		}
		if c.answer == 0 && len(a.Ns) != 1 {
			t.Errorf("%s: negative answer without SOA", c.name)
		}
		for _, rr := range a.Answer {
			if rr.Header().Ttl != 5 {
				t.Errorf("%s: TTL %d, want 5", c.name, rr.Header().Ttl)
			}
		}
	}
}
