package model

import (
	"strings"
	"testing"
)

const routeBase = "name: web\nimage: berth-test/busybox:latest\nports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: udp}]\n"

func TestRoutesParseAndValidate(t *testing.T) {
	s, err := ParseSpec([]byte(routeBase + `routes:
- {host: Hello.Example.Test, port: http, tls: {secretName: hello-cert, redirect: true}}
- {host: "*.example.test", path: /api/, port: http, balance: leastConnections}
- {protocol: tcp, listenPort: 15432, port: http}
- host: canary.example.test
  port: http
  traffic:
    canary: 4
    rules:
    - {header: {name: X-Canary, value: "1"}, target: canary}
    - {sourceCIDRs: [10.0.0.0/8], target: 3}
    weights: [{target: canary, weight: 10}]
`))
	if err != nil {
		t.Fatal(err)
	}
	s.Normalize()
	s.NormalizeRoutes()
	if verr := s.Validate(); verr != nil {
		t.Fatal(verr)
	}
	r := s.Routes
	if r[0].Host != "hello.example.test" || r[0].Path != "/" || r[0].Protocol != RouteHTTP || r[0].Balance != BalanceRoundRobin {
		t.Fatalf("defaults not applied: %+v", r[0])
	}
	if r[1].Path != "/api" || r[1].ClaimKey() != "/routeclaims/http/*.example.test/api" {
		t.Fatalf("path %q claim %q", r[1].Path, r[1].ClaimKey())
	}
	if r[2].ClaimKey() != "/routeclaims/tcp/15432" {
		t.Fatalf("tcp claim %q", r[2].ClaimKey())
	}
	if r[3].Traffic.Rules[1].Target != "3" {
		t.Fatalf("numeric target %q", r[3].Traffic.Rules[1].Target)
	}
}

func TestRouteValidationNamesTheField(t *testing.T) {
	cases := []struct{ routes, field, msg string }{
		{"[{host: a.test, port: web}]", "routes[0].port", `names no declared port "web"`},
		{"[{host: a.test, port: dns}]", "routes[0].port", "udp"},
		{"[{port: http}]", "routes[0].host", "is required"},
		{"[{host: 'a_b.test', port: http}]", "routes[0].host", "DNS name"},
		{"[{host: 'a.*.test', port: http}]", "routes[0].host", "DNS name"},
		{"[{host: a.test, path: api, port: http}]", "routes[0].path", "starting with /"},
		{"[{host: a.test, port: http, protocol: udp}]", "routes[0].protocol", "http or tcp"},
		{"[{protocol: tcp, port: http}]", "routes[0].listenPort", "between 1 and 65535"},
		{"[{host: a.test, port: http, listenPort: 80}]", "routes[0].listenPort", "only for tcp"},
		{"[{host: a.test, port: http, balance: random}]", "routes[0].balance", "roundRobin"},
		{"[{host: a.test, port: http, tls: {secretName: Bad_Name}}]", "routes[0].tls.secretName", "lowercase"},
		{"[{host: a.test, port: http}, {host: A.test, path: /, port: http}]", "routes[1]", "like routes[0]"},
		{"[{host: a.test, port: http, traffic: {rules: [{target: stable}]}}]", "routes[0].traffic.rules[0]", "at least one"},
		{"[{host: a.test, port: http, traffic: {rules: [{sourceCIDRs: [10.0.0.0/33], target: stable}]}}]", "routes[0].traffic.rules[0].sourceCIDRs[0]", "CIDR"},
		{"[{host: a.test, port: http, traffic: {rules: [{sourceCIDRs: [banana], target: stable}]}}]", "routes[0].traffic.rules[0].sourceCIDRs[0]", "CIDR"},
		{"[{host: a.test, port: http, traffic: {rules: [{header: {name: X, regex: '('}, target: stable}]}}]", "routes[0].traffic.rules[0].header.regex", "regular expression"},
		{"[{host: a.test, port: http, traffic: {rules: [{header: {name: 'X Y', value: a}, target: stable}]}}]", "routes[0].traffic.rules[0].header.name", "header"},
		{"[{host: a.test, port: http, traffic: {rules: [{cookie: {name: c, value: a, regex: b}, target: stable}]}}]", "routes[0].traffic.rules[0].cookie", "not both"},
		{"[{host: a.test, port: http, traffic: {rules: [{cookie: {name: c}, target: canary}]}}]", "routes[0].traffic.rules[0].target", "canary is not set"},
		{"[{host: a.test, port: http, traffic: {rules: [{cookie: {name: c}, target: latest}]}}]", "routes[0].traffic.rules[0].target", "revision number"},
		{"[{host: a.test, port: http, traffic: {canary: 2, weights: [{target: canary, weight: 101}]}}]", "routes[0].traffic.weights[0].weight", "between 0 and 100"},
		{"[{host: a.test, port: http, traffic: {canary: 2, weights: [{target: canary, weight: 60}, {target: 1, weight: 50}]}}]", "routes[0].traffic.weights", "add up to 110%"},
		{"[{protocol: tcp, listenPort: 9000, port: http, traffic: {rules: [{header: {name: a}, target: stable}]}}]", "routes[0].traffic.rules[0]", "sourceCIDRs"},
		{"[{protocol: tcp, listenPort: 9000, port: http, tls: {}}]", "routes[0].tls", "only for http"},
		{"[{host: a.test, port: http, hots: b}]", "routes[0].hots", "unknown field"},
	}
	for _, c := range cases {
		s, err := ParseSpec([]byte(routeBase + "routes: " + c.routes + "\n"))
		if err == nil {
			s.Normalize()
			if verr := s.Validate(); verr != nil {
				err = verr
			}
		}
		ve, ok := err.(*ValidationError)
		if !ok {
			t.Errorf("%s: got %v, want a validation error", c.routes, err)
			continue
		}
		found := false
		for _, f := range ve.Errors {
			if f.Field == c.field && strings.Contains(f.Message, c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: errors %v, want %s: ...%s...", c.routes, ve.Errors, c.field, c.msg)
		}
	}
}
