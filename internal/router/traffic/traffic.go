// Package traffic decides which revision of an app serves a request. It is
// pure: a compiled Policy, the request's facts, the revisions that have
// ready instances and an injected random source go in; a revision and the
// reason come out. The router calls Pick once per request (or connection).
//
// Semantics (also in docs/router.md):
//   - "stable" is Traffic.Stable, or the app's current revision when 0;
//     "canary" is Traffic.Canary.
//   - Rules are evaluated in order; the first rule whose conditions all
//     hold and whose target has a ready instance wins. A matching rule
//     whose target has no ready instance falls through.
//   - Then one draw r in [0,100) is made and Weights are laid end to end:
//     weight i takes r in [sum of weights before i, that sum + weight i).
//     A draw landing on a target without ready instances, or beyond the
//     weights, goes to the default.
//   - The default is stable when the route has a traffic section, else
//     Any (every ready instance of every revision, so a rolling update
//     keeps serving from old and new instances). When stable has no ready
//     instance the default falls back to Any.
package traffic

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"

	"github.com/berth-dev/berth/internal/model"
)

// Any is the revision of a decision that lets every ready revision serve.
const Any int64 = 0

// Policy is a route's compiled traffic section.
type Policy struct {
	// Split is true when the route has a traffic section; without one the
	// default is Any rather than Stable.
	Split bool
	// Stable is the resolved stable revision.
	Stable  int64
	Rules   []Rule
	Weights []Weight
}

// Rule is a compiled model.TrafficRule; a nil matcher is not checked.
type Rule struct {
	Header *Matcher
	Cookie *Matcher
	// CIDRs match the client address; empty means not checked.
	CIDRs  []netip.Prefix
	Target int64
	// Desc names the rule in decisions ("rules[0]").
	Desc string
}

// Matcher matches one header's or cookie's value.
type Matcher struct {
	Name  string
	Value string
	Regex *regexp.Regexp
}

// Weight sends Percent of requests to Target.
type Weight struct {
	Target  int64
	Percent int
	// Desc names the weight in decisions ("weights[0]").
	Desc string
}

// RequestInfo are the facts about a request rules can match.
type RequestInfo struct {
	// Source is the client address (invalid when unknown).
	Source netip.Addr
	// Header holds the request headers, cookies included; nil for tcp.
	Header http.Header
}

// Rand is the random source for weights; *rand.Rand of math/rand/v2
// satisfies it. It must return a value in [0, n).
type Rand interface{ IntN(n int) int }

// Decision is what Pick chose and why.
type Decision struct {
	// Revision serves the request; Any means every ready revision.
	Revision int64
	// Reason is short and stable, for logs and tests.
	Reason string
}

// Compile resolves stable/canary against current (the app's current
// revision) and compiles matchers. t == nil yields the default policy.
// Errors name the field like model validation does; a validated spec
// never fails.
func Compile(t *model.Traffic, current int64) (Policy, error) {
	if t == nil {
		return Policy{Stable: current}, nil
	}
	p := Policy{Split: true, Stable: current}
	if t.Stable > 0 {
		p.Stable = t.Stable
	}
	resolve := func(field string, ref model.RevisionRef) (int64, error) {
		switch ref {
		case model.RefStable:
			return p.Stable, nil
		case model.RefCanary:
			if t.Canary <= 0 {
				return 0, fmt.Errorf("%s: names canary but canary is not set", field)
			}
			return t.Canary, nil
		}
		if n, ok := ref.Number(); ok {
			return n, nil
		}
		return 0, fmt.Errorf("%s: must be stable, canary or a revision number, got %q", field, ref)
	}
	for i, r := range t.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		rule := Rule{Desc: f}
		var err error
		if rule.Target, err = resolve(f+".target", r.Target); err != nil {
			return Policy{}, err
		}
		if rule.Header, err = compileMatch(f+".header", r.Header); err != nil {
			return Policy{}, err
		}
		if rule.Cookie, err = compileMatch(f+".cookie", r.Cookie); err != nil {
			return Policy{}, err
		}
		for j, c := range r.SourceCIDRs {
			pfx, err := netip.ParsePrefix(c)
			if err != nil {
				return Policy{}, fmt.Errorf("%s.sourceCIDRs[%d]: %v", f, j, err)
			}
			rule.CIDRs = append(rule.CIDRs, pfx.Masked())
		}
		p.Rules = append(p.Rules, rule)
	}
	for i, w := range t.Weights {
		target, err := resolve(fmt.Sprintf("weights[%d].target", i), w.Target)
		if err != nil {
			return Policy{}, err
		}
		p.Weights = append(p.Weights, Weight{Target: target, Percent: w.Weight, Desc: fmt.Sprintf("weights[%d]", i)})
	}
	return p, nil
}

func compileMatch(field string, m *model.ValueMatch) (*Matcher, error) {
	if m == nil {
		return nil, nil
	}
	out := &Matcher{Name: m.Name, Value: m.Value}
	if m.Regex != "" {
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return nil, fmt.Errorf("%s.regex: %v", field, err)
		}
		out.Regex = re
	}
	return out, nil
}

// Pick chooses the revision for req. ready maps revision to its number of
// ready instances; rnd is used only when the policy has weights.
func Pick(req RequestInfo, p *Policy, ready map[int64]int, rnd Rand) Decision {
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.matches(req) && ready[r.Target] > 0 {
			return Decision{Revision: r.Target, Reason: r.Desc}
		}
	}
	if len(p.Weights) > 0 {
		draw := rnd.IntN(100)
		lo := 0
		for _, w := range p.Weights {
			if draw < lo+w.Percent {
				if ready[w.Target] > 0 {
					return Decision{Revision: w.Target, Reason: w.Desc}
				}
				break
			}
			lo += w.Percent
		}
	}
	if !p.Split {
		return Decision{Revision: Any, Reason: "any"}
	}
	if ready[p.Stable] > 0 {
		return Decision{Revision: p.Stable, Reason: "stable"}
	}
	return Decision{Revision: Any, Reason: "any: stable has no ready instance"}
}

func (r *Rule) matches(req RequestInfo) bool {
	if r.Header != nil && !r.Header.matchAny(req.Header.Values(r.Header.Name)) {
		return false
	}
	if r.Cookie != nil && !r.Cookie.matchAny(cookieValues(req.Header, r.Cookie.Name)) {
		return false
	}
	if len(r.CIDRs) > 0 {
		if !req.Source.IsValid() {
			return false
		}
		src := req.Source.Unmap()
		in := false
		for _, c := range r.CIDRs {
			if c.Contains(src) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// matchAny reports whether any of vals matches: presence when neither
// Value nor Regex is set.
func (m *Matcher) matchAny(vals []string) bool {
	for _, v := range vals {
		switch {
		case m.Regex != nil:
			if m.Regex.MatchString(v) {
				return true
			}
		case m.Value != "":
			if v == m.Value {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func cookieValues(h http.Header, name string) []string {
	if len(h["Cookie"]) == 0 {
		return nil
	}
	var out []string
	for _, line := range h["Cookie"] {
		cs, err := http.ParseCookie(line)
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.Name == name {
				out = append(out, c.Value)
			}
		}
	}
	return out
}
