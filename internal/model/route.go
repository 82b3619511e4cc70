package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Route protocols.
const (
	RouteHTTP = "http"
	RouteTCP  = "tcp"
)

// Balancing policies of a route.
const (
	BalanceRoundRobin       = "roundRobin"
	BalanceLeastConnections = "leastConnections"
)

// Route sends traffic from the edge router to one of the app's ports. An
// http route matches a host (exact, or a "*.domain" wildcard) and a path
// prefix; a tcp route owns a router port (ListenPort). See docs/router.md.
type Route struct {
	// Host is the DNS name requests are for; "*.example.test" matches one
	// or more labels in front of example.test. Required for http.
	Host string `json:"host,omitempty"`
	// Path is a path prefix matched on segment boundaries ("/api" matches
	// /api and /api/x, not /apix); default "/". The longest match wins.
	Path string `json:"path,omitempty"`
	// Port is the name of one of the app's ports.
	Port string `json:"port"`
	// Protocol is http (default) or tcp.
	Protocol string `json:"protocol,omitempty"`
	// ListenPort is the router port a tcp route listens on.
	ListenPort int `json:"listenPort,omitempty"`
	// Balance is roundRobin (default) or leastConnections.
	Balance string `json:"balance,omitempty"`
	// TLS serves the route on the router's TLS listener too.
	TLS *RouteTLS `json:"tls,omitempty"`
	// Traffic splits requests between revisions (canary, rules).
	Traffic *Traffic `json:"traffic,omitempty"`
}

// RouteTLS configures TLS termination for an http route.
type RouteTLS struct {
	// SecretName pins the stored certificate (see Certificate) served for
	// Host; empty means any stored certificate whose names cover Host
	// (exact first, then wildcard).
	SecretName string `json:"secretName,omitempty"`
	// Redirect answers plain-HTTP requests with a 308 to https.
	Redirect bool `json:"redirect,omitempty"`
}

// Revision references used by traffic rules.
const (
	// RefStable is Traffic.Stable, or the app's current revision when that
	// is 0.
	RefStable RevisionRef = "stable"
	// RefCanary is Traffic.Canary; it must be set to be named.
	RefCanary RevisionRef = "canary"
)

// RevisionRef names the revision a rule sends traffic to: "stable",
// "canary" or a revision number (written as a number or a string).
type RevisionRef string

// UnmarshalJSON accepts a string or a whole number.
func (r *RevisionRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = RevisionRef(s)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("must be stable, canary or a revision number, got %s", b)
	}
	*r = RevisionRef(strconv.FormatInt(n, 10))
	return nil
}

// Number returns the revision number of a numeric reference.
func (r RevisionRef) Number() (int64, bool) {
	n, err := strconv.ParseInt(string(r), 10, 64)
	return n, err == nil && n > 0
}

// Traffic decides which revision serves a request: Rules in order (first
// match wins), then Weights, then the default (see docs/router.md).
type Traffic struct {
	// Stable is the revision that takes the traffic no rule or weight
	// sends elsewhere; 0 means the app's current revision.
	Stable int64 `json:"stable,omitempty"`
	// Canary is the revision "canary" refers to; 0 means none.
	Canary int64 `json:"canary,omitempty"`
	// Rules send matching requests to a revision; first match wins.
	Rules []TrafficRule `json:"rules,omitempty"`
	// Weights send a percentage of the remaining requests to a revision;
	// they add up to at most 100 and the rest goes to the default.
	Weights []TrafficWeight `json:"weights,omitempty"`
}

// TrafficRule matches a request when every condition it sets holds.
type TrafficRule struct {
	// Header matches a request header.
	Header *ValueMatch `json:"header,omitempty"`
	// Cookie matches a request cookie.
	Cookie *ValueMatch `json:"cookie,omitempty"`
	// SourceCIDRs match the client address (any of them).
	SourceCIDRs []string `json:"sourceCIDRs,omitempty"`
	// Target is the revision matching requests go to.
	Target RevisionRef `json:"target"`
}

// ValueMatch matches a named header or cookie: equal to Value, matching
// Regex (RE2, unanchored unless written with ^ and $), or, with neither
// set, present.
type ValueMatch struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Regex string `json:"regex,omitempty"`
}

// TrafficWeight sends Weight percent (0-100) of requests to Target.
type TrafficWeight struct {
	Target RevisionRef `json:"target"`
	Weight int         `json:"weight"`
}

// EffectivePath is Path with the default applied and a trailing slash
// removed ("/api/" and "/api" are the same prefix).
func (r *Route) EffectivePath() string {
	p := r.Path
	if p == "" {
		return "/"
	}
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	return p
}

// EffectiveProtocol is Protocol with the default applied.
func (r *Route) EffectiveProtocol() string {
	if r.Protocol == "" {
		return RouteHTTP
	}
	return r.Protocol
}

// NormalizeRoutes fills route defaults (protocol, path, balance) and
// lowercases hosts so equal routes hash and claim equally.
func (s *AppSpec) NormalizeRoutes() {
	for i := range s.Routes {
		r := &s.Routes[i]
		r.Protocol = r.EffectiveProtocol()
		r.Host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
		if r.Protocol == RouteHTTP {
			r.Path = r.EffectivePath()
		}
		if r.Balance == "" {
			r.Balance = BalanceRoundRobin
		}
	}
	if len(s.Routes) == 0 {
		s.Routes = nil
	}
}

// Store keys of routing objects.
const (
	// PrefixRouteClaims holds one RouteClaim per host+path or tcp port.
	PrefixRouteClaims = "/routeclaims/"
	// PrefixCerts holds TLS certificates by name.
	PrefixCerts = "/certs/"
)

// RouteClaim records which app owns a host+path (or a tcp router port),
// so two apps cannot both claim it. Apply writes it in the same store
// transaction as the app.
type RouteClaim struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// What is claimed, for humans: "host/path" or "tcp :port".
	What string `json:"what"`
}

// ClaimKey is where the claim of route r lives.
func (r *Route) ClaimKey() string {
	if r.EffectiveProtocol() == RouteTCP {
		return fmt.Sprintf("%stcp/%d", PrefixRouteClaims, r.ListenPort)
	}
	return PrefixRouteClaims + "http/" + strings.ToLower(r.Host) + r.EffectivePath()
}

// ClaimName describes what route r claims, for messages.
func (r *Route) ClaimName() string {
	if r.EffectiveProtocol() == RouteTCP {
		return fmt.Sprintf("tcp port %d", r.ListenPort)
	}
	return "host " + r.Host + " path " + r.EffectivePath()
}

// Certificate is a TLS certificate and key the router serves for the
// names it covers. It is stored at CertKey(Name); the key is stored as
// given (protect the store like a key file).
type Certificate struct {
	Name string `json:"name"`
	// CertPEM is the PEM certificate chain, leaf first.
	CertPEM string `json:"certPEM"`
	// KeyPEM is the PEM private key.
	KeyPEM string `json:"keyPEM"`
	// DNSNames are the leaf's names (filled when stored).
	DNSNames []string `json:"dnsNames,omitempty"`
	// NotAfter is the leaf's expiry (filled when stored).
	NotAfter  time.Time `json:"notAfter,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// CertKey is where certificate name is stored.
func CertKey(name string) string { return PrefixCerts + name }

var (
	certName   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
	headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// ValidateCertName returns why name is not a valid certificate name, or "".
func ValidateCertName(name string) string {
	if len(name) == 0 || len(name) > 253 || !certName.MatchString(name) {
		return fmt.Sprintf("must be 1-253 lowercase letters, digits, '.' and '-', got %q", name)
	}
	return ""
}

// validHost reports whether h is a lowercase DNS name, optionally with a
// leading "*." wildcard label.
func validHost(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 || strings.Contains(h, "*") {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > 63 || !dnsLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// routes checks every route against the declared ports.
func (v *validator) routes(routes []Route, ports map[string]PortSpec) {
	claimed := map[string]int{}
	for i := range routes {
		r := &routes[i]
		f := fmt.Sprintf("routes[%d]", i)
		proto := r.EffectiveProtocol()
		switch proto {
		case RouteHTTP:
			host := strings.ToLower(strings.TrimSuffix(r.Host, "."))
			if r.Host == "" {
				v.add(f+".host", "is required for an http route")
			} else if !validHost(host) {
				v.add(f+".host", "must be a DNS name such as app.example.test or *.example.test, got %q", r.Host)
			}
			if p := r.Path; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# \t") || strings.Contains(p, "//")) {
				v.add(f+".path", "must be a path prefix starting with / (no spaces, ?, # or //), got %q", p)
			}
			if r.ListenPort != 0 {
				v.add(f+".listenPort", "is only for tcp routes; http routes are served on the router's listeners")
			}
		case RouteTCP:
			if r.ListenPort < 1 || r.ListenPort > 65535 {
				v.add(f+".listenPort", "must be between 1 and 65535 for a tcp route, got %d", r.ListenPort)
			}
			if r.Path != "" {
				v.add(f+".path", "is only for http routes")
			}
			if r.TLS != nil {
				v.add(f+".tls", "is only for http routes; tcp routes pass bytes through")
			}
		default:
			v.add(f+".protocol", "must be http or tcp, got %q", r.Protocol)
		}
		switch p, ok := ports[r.Port]; {
		case r.Port == "":
			v.add(f+".port", "is required (the name of one of ports)")
		case !ok:
			v.add(f+".port", "names no declared port %q", r.Port)
		case p.Protocol == "udp":
			v.add(f+".port", "port %q is udp; routes need a tcp port", r.Port)
		}
		switch r.Balance {
		case "", BalanceRoundRobin, BalanceLeastConnections:
		default:
			v.add(f+".balance", "must be roundRobin or leastConnections, got %q", r.Balance)
		}
		if r.TLS != nil && r.TLS.SecretName != "" {
			if msg := ValidateCertName(r.TLS.SecretName); msg != "" {
				v.add(f+".tls.secretName", "%s", msg)
			}
		}
		if k := r.ClaimKey(); proto == RouteHTTP || proto == RouteTCP {
			if j, dup := claimed[k]; dup {
				v.add(f, "claims %s like routes[%d]", r.ClaimName(), j)
			} else {
				claimed[k] = i
			}
		}
		v.traffic(f+".traffic", r.Traffic, proto)
	}
}

func (v *validator) traffic(f string, t *Traffic, proto string) {
	if t == nil {
		return
	}
	if t.Stable < 0 {
		v.add(f+".stable", "must be a revision number >= 1, or 0 for the app's current revision")
	}
	if t.Canary < 0 {
		v.add(f+".canary", "must be a revision number >= 1, or 0 for none")
	}
	target := func(field string, ref RevisionRef) {
		switch {
		case ref == "":
			v.add(field, "is required: stable, canary or a revision number")
		case ref == RefStable:
		case ref == RefCanary:
			if t.Canary == 0 {
				v.add(field, "names canary but %s.canary is not set", f)
			}
		default:
			if _, ok := ref.Number(); !ok {
				v.add(field, "must be stable, canary or a revision number >= 1, got %q", ref)
			}
		}
	}
	for i, r := range t.Rules {
		rf := fmt.Sprintf("%s.rules[%d]", f, i)
		if r.Header == nil && r.Cookie == nil && len(r.SourceCIDRs) == 0 {
			v.add(rf, "must set at least one of header, cookie or sourceCIDRs")
		}
		if proto == RouteTCP && (r.Header != nil || r.Cookie != nil) {
			v.add(rf, "tcp routes can only match sourceCIDRs")
		}
		v.valueMatch(rf+".header", r.Header)
		v.valueMatch(rf+".cookie", r.Cookie)
		for j, c := range r.SourceCIDRs {
			if _, err := netip.ParsePrefix(c); err != nil {
				v.add(fmt.Sprintf("%s.sourceCIDRs[%d]", rf, j), "must be a CIDR such as 10.0.0.0/8 or fd00::/8, got %q", c)
			}
		}
		target(rf+".target", r.Target)
	}
	sum := 0
	for i, w := range t.Weights {
		wf := fmt.Sprintf("%s.weights[%d]", f, i)
		if w.Weight < 0 || w.Weight > 100 {
			v.add(wf+".weight", "must be between 0 and 100 (percent), got %d", w.Weight)
		}
		sum += w.Weight
		target(wf+".target", w.Target)
	}
	if sum > 100 {
		v.add(f+".weights", "add up to %d%%; at most 100%% can be split off", sum)
	}
}

func (v *validator) valueMatch(f string, m *ValueMatch) {
	if m == nil {
		return
	}
	if m.Name == "" || !headerName.MatchString(m.Name) {
		v.add(f+".name", "must be a header or cookie name (letters, digits and !#$%%&'*+.^_`|~-), got %q", m.Name)
	}
	if m.Value != "" && m.Regex != "" {
		v.add(f, "set value or regex, not both")
	}
	if m.Regex != "" {
		if len(m.Regex) > 1024 {
			v.add(f+".regex", "must be at most 1024 characters")
		} else if _, err := regexp.Compile(m.Regex); err != nil {
			v.add(f+".regex", "is not a valid regular expression: %v", err)
		}
	}
}
