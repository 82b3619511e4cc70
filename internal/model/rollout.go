package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rollout strategies (RolloutSpec.Type).
const (
	RolloutRolling   = "rolling"
	RolloutBlueGreen = "blueGreen"
	RolloutCanary    = "canary"
)

// Rollout defaults applied by RolloutSpec.Effective.
const (
	DefaultProgressDeadline = 10 * time.Minute
	DefaultScaleDownDelay   = 30 * time.Second
)

// RolloutSpec says how a service moves from one revision to the next. It
// is not part of the template: changing it makes no new revision. See
// docs/releases.md.
type RolloutSpec struct {
	// Type is rolling (default), blueGreen or canary.
	Type string `json:"type,omitempty"`
	// MaxSurge is how many instances (count or "25%" of desired, rounded
	// up) may run above the desired count during a rolling update
	// (default 1).
	MaxSurge *IntOrPercent `json:"maxSurge,omitempty"`
	// MaxUnavailable is how many instances (count or percentage, rounded
	// down) may be below the desired count of ready ones (default 0).
	MaxUnavailable *IntOrPercent `json:"maxUnavailable,omitempty"`
	// MinReadySeconds is how long a new instance must have been running
	// and ready before it counts as available.
	MinReadySeconds int `json:"minReadySeconds,omitempty"`
	// ProgressDeadline fails the rollout when no new instance became
	// available for this long (default 10m).
	ProgressDeadline Duration `json:"progressDeadline,omitempty"`
	// AutoRollback rolls a failed rollout back to the previous revision
	// (default true).
	AutoRollback *bool `json:"autoRollback,omitempty"`
	// BlueGreen tunes the blueGreen strategy.
	BlueGreen *BlueGreenSpec `json:"blueGreen,omitempty"`
	// Canary tunes the canary strategy.
	Canary *CanarySpec `json:"canary,omitempty"`
}

// BlueGreenSpec tunes a blue/green rollout.
type BlueGreenSpec struct {
	// PreviewSeconds is how long every new instance must be ready before
	// traffic switches.
	PreviewSeconds int `json:"previewSeconds,omitempty"`
	// ScaleDownDelay is how long the old set keeps running after the
	// switch, so `berth rollout undo` can switch back at once (default 30s).
	ScaleDownDelay Duration `json:"scaleDownDelay,omitempty"`
}

// CanarySpec tunes a canary rollout.
type CanarySpec struct {
	// Steps run in order; default [{weight: 10}, {pause: {}}].
	Steps []CanaryStep `json:"steps,omitempty"`
	// Match sends requests matching any entry to the canary whatever the
	// weight.
	Match []CanaryMatch `json:"match,omitempty"`
	// Analysis promotes automatically while the canary stays healthy.
	Analysis *CanaryAnalysis `json:"analysis,omitempty"`
}

// CanaryStep is either a weight (percent of traffic to the canary) or a
// pause.
type CanaryStep struct {
	Weight *int       `json:"weight,omitempty"`
	Pause  *StepPause `json:"pause,omitempty"`
}

// StepPause waits Duration, or, when Duration is zero, until `berth
// rollout promote`. It is written as a duration ("30s") or as an object
// ({} or {duration: 30s}).
type StepPause struct {
	Duration Duration `json:"duration,omitempty"`
}

// UnmarshalJSON accepts "30s", a number of seconds or an object.
func (p *StepPause) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return err
		}
		for k := range obj {
			if k != "duration" {
				return fmt.Errorf("unknown field %q in pause: write {} (until promoted) or {duration: 30s}", k)
			}
		}
		if d, ok := obj["duration"]; ok {
			return p.Duration.UnmarshalJSON(d)
		}
		return nil
	}
	return p.Duration.UnmarshalJSON(b)
}

// CanaryMatch sends matching requests to the canary: every condition set
// must hold.
type CanaryMatch struct {
	Header      *MatchValue `json:"header,omitempty"`
	Cookie      *MatchValue `json:"cookie,omitempty"`
	SourceCIDRs []string    `json:"sourceCIDRs,omitempty"`
}

// MatchValue matches a header or cookie by exact value (Equals), RE2
// regex, or, with neither, presence.
type MatchValue struct {
	Name   string `json:"name"`
	Equals string `json:"equals,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// MaxAnalysisWindow bounds CanaryAnalysis.Window (the router keeps
// per-revision figures this long).
const MaxAnalysisWindow = 10 * time.Minute

// DefaultMinRequests is CanaryAnalysis.MinRequests when unset.
const DefaultMinRequests = 20

// CanaryAnalysis gates automatic promotion: each weight step (and each
// indefinite pause) must pass Window with the canary healthy and, when
// the router's figures are available (berth up with its router), within
// the thresholds compared over the last Window; a breach fails the
// rollout (and rolls it back with autoRollback).
type CanaryAnalysis struct {
	// Window is how long each step must stay healthy before the rollout
	// moves on by itself; also the span the figures are taken over.
	Window Duration `json:"window"`
	// MaxErrorRate is the highest share of 5xx answers and proxy errors
	// (percent) the canary may have.
	MaxErrorRate *float64 `json:"maxErrorRate,omitempty"`
	// MaxLatencyP99Ratio is the highest canary p99 latency as a multiple
	// of stable's (e.g. 1.5).
	MaxLatencyP99Ratio float64 `json:"maxLatencyP99Ratio,omitempty"`
	// MinRequests is how many requests a revision must have served in the
	// window before its figures are judged (default 20).
	MinRequests int `json:"minRequests,omitempty"`
}

// IntOrPercent is a count (3) or a percentage of the desired count
// ("25%").
type IntOrPercent struct {
	Value   int
	Percent bool
}

// MarshalJSON writes 3 or "25%".
func (v IntOrPercent) MarshalJSON() ([]byte, error) {
	if v.Percent {
		return json.Marshal(strconv.Itoa(v.Value) + "%")
	}
	return json.Marshal(v.Value)
}

// UnmarshalJSON accepts a whole number or a "N%" string.
func (v *IntOrPercent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		num, ok := strings.CutSuffix(s, "%")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("must be a whole number or a percentage such as \"25%%\", got %q", s)
		}
		*v = IntOrPercent{Value: n, Percent: true}
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1e6 {
		return fmt.Errorf("must be a whole number or a percentage such as \"25%%\", got %s", b)
	}
	*v = IntOrPercent{Value: int(f)}
	return nil
}

// Resolve turns v into a count out of total, rounding up or down.
func (v IntOrPercent) Resolve(total int, roundUp bool) int {
	if !v.Percent {
		return v.Value
	}
	x := float64(total) * float64(v.Value) / 100
	if roundUp {
		return int(math.Ceil(x))
	}
	return int(math.Floor(x))
}

// EffectiveRollout returns the app's rollout settings with defaults.
func (s *AppSpec) EffectiveRollout() RolloutSpec {
	var r RolloutSpec
	if s.Rollout != nil {
		r = *s.Rollout
	}
	if r.Type == "" {
		r.Type = RolloutRolling
	}
	if r.MaxSurge == nil && r.MaxUnavailable == nil {
		r.MaxSurge = &IntOrPercent{Value: 1}
	}
	if r.MaxSurge == nil {
		r.MaxSurge = &IntOrPercent{}
	}
	if r.MaxUnavailable == nil {
		r.MaxUnavailable = &IntOrPercent{}
	}
	if r.ProgressDeadline.Duration == 0 {
		r.ProgressDeadline = D(DefaultProgressDeadline)
	}
	if r.AutoRollback == nil {
		t := true
		r.AutoRollback = &t
	}
	if r.BlueGreen == nil {
		r.BlueGreen = &BlueGreenSpec{}
	}
	if r.BlueGreen.ScaleDownDelay.Duration == 0 {
		r.BlueGreen.ScaleDownDelay = D(DefaultScaleDownDelay)
	}
	if r.Canary == nil {
		r.Canary = &CanarySpec{}
	}
	if len(r.Canary.Steps) == 0 {
		ten := 10
		r.Canary.Steps = []CanaryStep{{Weight: &ten}, {Pause: &StepPause{}}}
	}
	return r
}

// CanaryRules turns the match list into traffic rules targeting canary.
func (c *CanarySpec) CanaryRules() []TrafficRule {
	var out []TrafficRule
	for _, m := range c.Match {
		r := TrafficRule{SourceCIDRs: m.SourceCIDRs, Target: RefCanary}
		if m.Header != nil {
			r.Header = &ValueMatch{Name: m.Header.Name, Value: m.Header.Equals, Regex: m.Header.Regex}
		}
		if m.Cookie != nil {
			r.Cookie = &ValueMatch{Name: m.Cookie.Name, Value: m.Cookie.Equals, Regex: m.Cookie.Regex}
		}
		out = append(out, r)
	}
	return out
}

// rollout validates the rollout section.
func (v *validator) rollout(s *AppSpec) {
	r := s.Rollout
	if r == nil {
		return
	}
	const f = "rollout"
	switch r.Type {
	case "", RolloutRolling, RolloutBlueGreen, RolloutCanary:
	default:
		v.add(f+".type", "must be rolling, blueGreen or canary, got %q", r.Type)
	}
	if s.IsSystem() || s.IsBatch() {
		v.add(f, "only service apps roll out; system and batch apps replace instances in place")
	}
	count := func(field string, x *IntOrPercent) int {
		if x == nil {
			return -1
		}
		switch {
		case x.Value < 0:
			v.add(field, "must not be negative, got %d", x.Value)
		case x.Percent && x.Value > 100:
			v.add(field, "must be at most 100%%, got %d%%", x.Value)
		}
		return x.Value
	}
	surge, unavail := count(f+".maxSurge", r.MaxSurge), count(f+".maxUnavailable", r.MaxUnavailable)
	if surge == 0 && unavail == 0 || surge == 0 && r.MaxUnavailable == nil {
		v.add(f+".maxSurge", "maxSurge and maxUnavailable cannot both be 0: the rollout could never replace an instance")
	}
	if r.MinReadySeconds < 0 || r.MinReadySeconds > 3600 {
		v.add(f+".minReadySeconds", "must be between 0 and 3600, got %d", r.MinReadySeconds)
	}
	if d := r.ProgressDeadline.Duration; d < 0 || d > 24*time.Hour {
		v.add(f+".progressDeadline", "must be between 0 (default 10m) and 24h, got %s", d)
	}
	if bg := r.BlueGreen; bg != nil {
		if bg.PreviewSeconds < 0 || bg.PreviewSeconds > 86400 {
			v.add(f+".blueGreen.previewSeconds", "must be between 0 and 86400, got %d", bg.PreviewSeconds)
		}
		if d := bg.ScaleDownDelay.Duration; d < 0 || d > 24*time.Hour {
			v.add(f+".blueGreen.scaleDownDelay", "must be between 0 (default 30s) and 24h, got %s", d)
		}
	}
	if c := r.Canary; c != nil {
		v.canary(f+".canary", c)
	}
}

func (v *validator) canary(f string, c *CanarySpec) {
	for i, st := range c.Steps {
		sf := fmt.Sprintf("%s.steps[%d]", f, i)
		switch {
		case (st.Weight == nil) == (st.Pause == nil):
			v.add(sf, "must set exactly one of weight and pause")
		case st.Weight != nil && (*st.Weight < 0 || *st.Weight > 100):
			v.add(sf+".weight", "must be between 0 and 100 (percent), got %d", *st.Weight)
		case st.Pause != nil && (st.Pause.Duration.Duration < 0 || st.Pause.Duration.Duration > 24*time.Hour):
			v.add(sf+".pause", "must be between 0s and 24h, or {} to wait for `berth rollout promote`")
		}
	}
	for i, m := range c.Match {
		mf := fmt.Sprintf("%s.match[%d]", f, i)
		if m.Header == nil && m.Cookie == nil && len(m.SourceCIDRs) == 0 {
			v.add(mf, "must set at least one of header, cookie or sourceCIDRs")
		}
		v.matchValue(mf+".header", m.Header)
		v.matchValue(mf+".cookie", m.Cookie)
		for j, c := range m.SourceCIDRs {
			if _, err := netip.ParsePrefix(c); err != nil {
				v.add(fmt.Sprintf("%s.sourceCIDRs[%d]", mf, j), "must be a CIDR such as 10.0.0.0/8 or fd00::/8, got %q", c)
			}
		}
	}
	if a := c.Analysis; a != nil {
		if d := a.Window.Duration; d < time.Second || d > MaxAnalysisWindow {
			v.add(f+".analysis.window", "must be between 1s and %s, got %s", MaxAnalysisWindow, d)
		}
		if r := a.MaxErrorRate; r != nil && (*r < 0 || *r > 100) {
			v.add(f+".analysis.maxErrorRate", "must be a percentage between 0 and 100, got %g", *r)
		}
		if a.MaxLatencyP99Ratio < 0 || a.MaxLatencyP99Ratio > 0 && a.MaxLatencyP99Ratio < 1 {
			v.add(f+".analysis.maxLatencyP99Ratio", "must be at least 1 (canary p99 / stable p99), got %g", a.MaxLatencyP99Ratio)
		}
		if a.MinRequests < 0 {
			v.add(f+".analysis.minRequests", "must not be negative, got %d", a.MinRequests)
		}
	}
}

func (v *validator) matchValue(f string, m *MatchValue) {
	if m == nil {
		return
	}
	if m.Name == "" || !headerName.MatchString(m.Name) {
		v.add(f+".name", "must be a header or cookie name, got %q", m.Name)
	}
	if m.Equals != "" && m.Regex != "" {
		v.add(f, "set equals or regex, not both")
	}
	if m.Regex != "" {
		if _, err := regexp.Compile(m.Regex); err != nil || len(m.Regex) > 1024 {
			v.add(f+".regex", "is not a valid regular expression (RE2, at most 1024 characters)")
		}
	}
}
