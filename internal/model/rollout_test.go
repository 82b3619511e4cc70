package model

import (
	"testing"
	"time"
)

func TestRolloutSpecParseAndValidate(t *testing.T) {
	base := "name: web\nimage: nginx\nports: [{name: http, containerPort: 80}]\n"
	cases := []specErrorCase{
		{"rollout: {type: rolling, maxSurge: 0, maxUnavailable: 0}", "rollout.maxSurge", "cannot both be 0"},
		{"rollout: {maxSurge: 0}", "rollout.maxSurge", "cannot both be 0"},
		{"rollout: {type: canary, canary: {steps: [{weight: 110}]}}", "rollout.canary.steps[0].weight", "between 0 and 100"},
		{"rollout: {type: canary, canary: {steps: [{weight: 10, pause: 5s}]}}", "rollout.canary.steps[0]", "exactly one"},
		{"rollout: {type: canary, canary: {steps: [{wait: 5s}]}}", "rollout.canary.steps[0].wait", "unknown field"},
		{"rollout: {type: fast}", "rollout.type", "rolling, blueGreen or canary"},
		{"rollout: {maxSurge: 50%%}", "rollout.maxSurge", ""},
		{"rollout: {maxSurge: \"150%\"}", "rollout.maxSurge", "at most 100%"},
		{"rollout: {type: canary, canary: {match: [{sourceCIDRs: [nope]}]}}", "rollout.canary.match[0].sourceCIDRs[0]", "CIDR"},
		{"rollout: {type: canary, canary: {match: [{}]}}", "rollout.canary.match[0]", "at least one"},
		{"rollout: {type: canary, canary: {analysis: {window: 0s}}}", "rollout.canary.analysis.window", "between"},
		{"rollout: {type: canary, canary: {steps: [{pause: {until: x}}]}}", "rollout.canary.steps[0].pause", "unknown field"},
	}
	expectSpecErrors(t, base, cases)
}

func TestRolloutSpecAccepted(t *testing.T) {
	y := `name: web
image: nginx
ports: [{name: http, containerPort: 80}]
rollout:
  type: canary
  maxSurge: 25%
  maxUnavailable: 1
  progressDeadline: 2m
  canary:
    steps: [{weight: 10}, {pause: 30s}, {weight: 50}, {pause: {}}]
    match:
      - header: {name: X-Department, equals: qa}
      - sourceCIDRs: [10.0.0.0/8]
      - cookie: {name: track, regex: "^beta"}
    analysis: {window: 1m}
`
	spec, err := ParseSpec([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	spec.Normalize()
	if verr := spec.Validate(); verr != nil {
		t.Fatal(verr)
	}
	r := spec.EffectiveRollout()
	if r.MaxSurge.Resolve(10, true) != 3 || r.MaxUnavailable.Resolve(10, false) != 1 || !*r.AutoRollback {
		t.Fatalf("effective %+v", r)
	}
	st := r.Canary.Steps
	if *st[0].Weight != 10 || st[1].Pause.Duration.Duration != 30*time.Second || st[3].Pause.Duration.Duration != 0 {
		t.Fatalf("steps %+v", st)
	}
	rules := r.Canary.CanaryRules()
	if len(rules) != 3 || rules[0].Header.Value != "qa" || rules[0].Target != RefCanary {
		t.Fatalf("rules %+v", rules)
	}
}

func TestRoutesAndRolloutAreNotTemplate(t *testing.T) {
	a := AppSpec{Name: "web", Image: "nginx"}
	b := a
	b.Routes = []Route{{Host: "web.test", Port: "http"}}
	b.Rollout = &RolloutSpec{Type: RolloutCanary}
	if TemplateHash(a) != TemplateHash(b) {
		t.Fatal("routes or rollout changed the template hash")
	}
}
