package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

// routedSpec is a web app behind the router at <name>.test whose pages
// say GREETING, with a rollout section.
const routedSpec = `name: %[1]s
image: berth-test/busybox:latest
command: ["sh", "-c", "mkdir -p /www && echo \"$GREETING from $HOSTNAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
env: {GREETING: %[2]s}
instances: %[3]d
resources: {cpu: 0.2, memory: 32Mi} # 0.05 throttled httpd under the load runs until health checks failed
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}, interval: 500ms, retries: 2}
stopGracePeriod: 2s
routes: [{host: %[1]s.test, path: /, port: http}]
rollout:
%[4]s
`

func (b *berth) applyRouted(app, greeting string, n int, rollout string) {
	b.t.Helper()
	b.mustCLI("apply", "-f", writeSpec(b.t, fmt.Sprintf(routedSpec, app, greeting, n, rollout)))
}

// rollout reads the app's rollout view.
func (b *berth) rollout(app string) model.RolloutView {
	b.t.Helper()
	v, err := b.c.Rollout(context.Background(), model.DefaultNamespace, app)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

// waitRollout waits until the rollout to revision to is in state and
// cond (when not nil) holds.
func (b *berth) waitRollout(app string, to int64, state string, cond func(*model.Rollout) bool) *model.Rollout {
	b.t.Helper()
	var ro *model.Rollout
	eventually(b.t, 3*time.Minute, fmt.Sprintf("rollout of %s to revision %d %s", app, to, state), func() bool {
		v := b.rollout(app)
		ro = v.Rollout
		return v.Pending == nil && ro != nil && ro.To == to && ro.State == state && (cond == nil || cond(ro))
	})
	return ro
}

// serving waits until every request through the router gets greeting.
func (b *berth) serving(app, greeting string) {
	b.t.Helper()
	addr := b.routerAddr()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := runLoad(b.t, loadOptions{Addr: addr, Host: app + ".test", Max: 20, Workers: 2}, nil)
		if r.OK == 20 && r.ByBody[greeting] == 20 {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := b.cli("ps", app, "-a")
			b.t.Fatalf("timed out waiting for %s serving %s through the router at %s: last %s\n%s", app, greeting, addr, r, ps)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *berth) hasEvent(app, reason, contains string) bool {
	b.t.Helper()
	evs, err := b.c.Events(context.Background(), client.EventFilter{Namespace: model.DefaultNamespace, App: app})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, e := range evs {
		if e.Reason == reason && strings.Contains(e.Message, contains) {
			return true
		}
	}
	return false
}

func instanceIDs(insts []model.Instance) string {
	var ids []string
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	return strings.Join(ids, ",")
}

// TestRollingUpdateUnderLoad: a rolling update (maxSurge 1) behind the
// router loses no request; a routes-only change restarts nothing.
func TestRollingUpdateUnderLoad(t *testing.T) {
	b := startBerth(t)
	app := "roll-" + randHex(3)
	rolling := "  type: rolling\n  maxSurge: 1\n  maxUnavailable: 0"
	b.applyRouted(app, "v1", 3, rolling)
	b.serving(app, "v1")
	addr := b.routerAddr()

	finish := background(t, loadOptions{Addr: addr, Host: app + ".test", Pause: 40 * time.Millisecond})
	b.applyRouted(app, "v2", 3, rolling)
	watched := make(chan string, 1)
	go func() {
		out, err := b.cli("rollout", "status", "-w", app)
		if err != nil {
			out += "\nexit: " + err.Error()
		}
		watched <- out
	}()
	b.waitRollout(app, 2, model.RolloutSucceeded, nil)
	res := finish()
	select {
	case out := <-watched:
		if !strings.Contains(out, "state:     succeeded") || !strings.Contains(out, "revision 1 -> 2") {
			t.Fatalf("rollout status -w:\n%s", out)
		}
	case <-time.After(time.Minute):
		t.Fatal("rollout status -w did not end after the rollout")
	}
	if h := b.mustCLI("rollout", "history", app); !strings.Contains(h, "last rollout: rolling 1 -> 2, succeeded") {
		t.Fatalf("rollout history:\n%s", h)
	}
	noErrors(t, "load during the rolling update", res)
	if res.ByBody["v1"] == 0 || res.ByBody["v2"] == 0 {
		t.Fatalf("load did not span the update: %s", res)
	}
	b.serving(app, "v2")
	if !b.hasEvent(app, "RolloutSucceeded", "revision 2") {
		t.Fatal("no RolloutSucceeded event")
	}

	// A routes-only change: same revision, same instances.
	before := instanceIDs(b.instances(app))
	spec := strings.Replace(fmt.Sprintf(routedSpec, app, "v2", 3, rolling), "path: /,", "path: /, balance: leastConnections,", 1)
	out := b.mustCLI("apply", "-f", writeSpec(t, spec))
	if !strings.Contains(out, "revision 2") {
		t.Fatalf("routes change: %s", out)
	}
	time.Sleep(2 * time.Second) // would be long enough for the controller to start replacing
	if after := instanceIDs(b.instances(app)); after != before {
		t.Fatalf("routes-only change replaced instances: %s -> %s", before, after)
	}
	if v := b.rollout(app); v.Revision != 2 {
		t.Fatalf("revision %d after a routes-only change", v.Revision)
	}
}

// TestBlueGreenSwitchAndSwitchBack: the new set starts in full, traffic
// switches at once, and undo during the grace switches back without
// starting anything — no request lost throughout.
func TestBlueGreenSwitchAndSwitchBack(t *testing.T) {
	b := startBerth(t)
	app := "bg-" + randHex(3)
	bg := "  type: blueGreen\n  blueGreen: {scaleDownDelay: 5m}"
	b.applyRouted(app, "v1", 2, bg)
	b.serving(app, "v1")
	addr := b.routerAddr()
	v1 := instanceIDs(b.instances(app))

	finish := background(t, loadOptions{Addr: addr, Host: app + ".test", Pause: 40 * time.Millisecond})
	b.applyRouted(app, "v2", 2, bg)
	// Until the switch, only v1 serves even as v2 instances get ready.
	b.waitRollout(app, 2, model.RolloutProgressing, func(ro *model.Rollout) bool { return ro.SwitchedAt != nil })
	res := finish()
	noErrors(t, "load during the blue/green switch", res)
	b.serving(app, "v2")
	if !b.hasEvent(app, "TrafficSwitched", "from revision 1 to 2") {
		t.Fatal("no TrafficSwitched event")
	}
	if n := len(b.instances(app)); n != 4 {
		t.Fatalf("%d instances during the grace, want 4 (old set kept)", n)
	}

	finish = background(t, loadOptions{Addr: addr, Host: app + ".test", Pause: 20 * time.Millisecond})
	b.mustCLI("rollout", "undo", app)
	b.serving(app, "v1")
	eventually(t, time.Minute, "the new set stopped", func() bool { return len(b.instances(app)) == 2 })
	res = finish()
	noErrors(t, "load during the switch back", res)
	if now := instanceIDs(b.instances(app)); now != v1 {
		t.Fatalf("switch back started instances: %s, want the old set %s", now, v1)
	}
	if ro := b.rollout(app).Rollout; ro.State != model.RolloutRolledBack || ro.RevertTo != 1 {
		t.Fatalf("rollout after undo: %+v", ro)
	}
}

// TestCanaryRulesWeightPromoteAbortAndRestart: match rules send exactly
// the matching requests to the canary; a 10% weight sends about 10%;
// berth killed mid-rollout resumes from the stored state; promote and
// abort lose no request.
func TestCanaryRulesWeightPromoteAbortAndRestart(t *testing.T) {
	b := startBerth(t)
	app := "can-" + randHex(3)
	canary := `  type: canary
  canary:
    steps: [{weight: 0}, {pause: {}}, {weight: 10}, {pause: {}}]
    match:
      - header: {name: X-Department, equals: qa}
      - sourceCIDRs: [127.0.0.2/32]`
	b.applyRouted(app, "v1", 2, canary)
	b.serving(app, "v1")
	b.applyRouted(app, "v2", 2, canary)
	b.waitRollout(app, 2, model.RolloutPaused, func(ro *model.Rollout) bool { return ro.Step == 1 })
	addr := b.routerAddr()
	host := app + ".test"

	// Rules: exact counts, once the router has taken the step (it
	// follows the store a moment behind the rollout's state).
	qaHeader := http.Header{"X-Department": {"qa"}}
	eventually(t, 10*time.Second, "the router sends matching requests to the canary", func() bool {
		h := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 1, Workers: 1, Header: qaHeader}, nil)
		s := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 1, Workers: 1, LocalIP: "127.0.0.2"}, nil)
		return h.ByBody["v2"] == 1 && s.ByBody["v2"] == 1
	})
	qa := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 200, Header: qaHeader}, nil)
	if qa.ByBody["v2"] != 200 {
		t.Fatalf("header rule: %s", qa)
	}
	src := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 200, LocalIP: "127.0.0.2"}, nil)
	if src.ByBody["v2"] != 200 {
		t.Fatalf("source CIDR rule: %s", src)
	}
	other := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 200, Header: http.Header{"X-Department": {"sales"}}}, nil)
	if other.ByBody["v1"] != 200 {
		t.Fatalf("non-matching requests: %s", other)
	}
	if st := b.mustCLI("rollout", "status", app); !strings.Contains(st, "step:      2/4") || !strings.Contains(st, "rollout promote") {
		t.Fatalf("rollout status:\n%s", st)
	}

	// Kill berth mid-rollout; the restarted one goes on from the store.
	b.kill()
	b.start()
	if ro := b.rollout(app).Rollout; ro.State != model.RolloutPaused || ro.Step != 1 || ro.To != 2 {
		t.Fatalf("after restart: %+v", ro)
	}
	addr = b.routerAddr()
	b.mustCLI("rollout", "pause", app)
	b.waitRollout(app, 2, model.RolloutPaused, func(ro *model.Rollout) bool { return ro.Paused })
	if st := b.mustCLI("rollout", "status", app); !strings.Contains(st, "paused by user") {
		t.Fatalf("rollout status after pause:\n%s", st)
	}
	b.mustCLI("rollout", "resume", app)
	b.waitRollout(app, 2, model.RolloutPaused, func(ro *model.Rollout) bool { return !ro.Paused && ro.Step == 1 })
	b.mustCLI("rollout", "promote", app)
	b.waitRollout(app, 2, model.RolloutPaused, func(ro *model.Rollout) bool { return ro.Step == 3 })

	// 10% weight over 2,000 requests: expected 200, σ = √(2000·0.1·0.9)
	// ≈ 13.4; accept ±5σ (133-267).
	w := runLoad(t, loadOptions{Addr: addr, Host: host, Max: 2000}, nil)
	noErrors(t, "10% weight", w)
	if w.OK != 2000 || math.Abs(float64(w.ByBody["v2"])-200) > 67 {
		t.Fatalf("10%% weight: %s", w)
	}

	finish := background(t, loadOptions{Addr: addr, Host: host, Pause: 20 * time.Millisecond})
	b.mustCLI("rollout", "promote", "--full", app)
	b.waitRollout(app, 2, model.RolloutSucceeded, nil)
	res := finish()
	noErrors(t, "load during the promotion", res)
	b.serving(app, "v2")

	// Abort of the next canary: traffic back to stable, canary removed.
	b.applyRouted(app, "v3", 2, canary)
	b.waitRollout(app, 3, model.RolloutPaused, func(ro *model.Rollout) bool { return ro.Step == 1 })
	finish = background(t, loadOptions{Addr: addr, Host: host, Pause: 20 * time.Millisecond, Header: http.Header{"X-Department": {"qa"}}})
	time.Sleep(time.Second)
	b.mustCLI("rollout", "abort", app)
	eventually(t, time.Minute, "canary removed", func() bool {
		for _, in := range b.instances(app) {
			if in.Revision == 3 {
				return false
			}
		}
		return true
	})
	res = finish()
	noErrors(t, "load during the abort", res)
	b.serving(app, "v2")
	if ro := b.rollout(app).Rollout; ro.State != model.RolloutAborted || ro.RevertTo != 2 {
		t.Fatalf("after abort: %+v", ro)
	}
	// Nothing rolls out now: promote is refused.
	if out, err := b.cli("rollout", "promote", app); err == nil || !strings.Contains(out, "no rollout") {
		t.Fatalf("promote with no rollout: %v %s", err, out)
	}
}

// TestCrashLoopRollsBackByItself: a revision whose instances keep
// failing is rolled back with an event naming the cause, and the old
// revision keeps serving.
func TestCrashLoopRollsBackByItself(t *testing.T) {
	b := startBerth(t)
	app := "crash-" + randHex(3)
	b.applyRouted(app, "v1", 2, "  type: rolling")
	b.serving(app, "v1")
	addr := b.routerAddr()
	spec := fmt.Sprintf(routedSpec, app, "v2", 2, "  type: rolling")
	spec = strings.Replace(spec, "exec httpd", "exit 1; exec httpd", 1)
	spec += "restart: {initialDelay: 200ms, maxDelay: 1s}\n"
	finish := background(t, loadOptions{Addr: addr, Host: app + ".test", Pause: 40 * time.Millisecond})
	b.mustCLI("apply", "-f", writeSpec(t, spec))
	ro := b.waitRollout(app, 2, model.RolloutRolledBack, nil)
	res := finish()
	noErrors(t, "load during the failed rollout", res)
	if !strings.Contains(ro.Reason, "crash loop") || ro.RevertTo != 1 {
		t.Fatalf("rollback: %+v", ro)
	}
	if !b.hasEvent(app, "RolloutRolledBack", "crash loop") {
		t.Fatal("no RolloutRolledBack event naming the crash loop")
	}
	b.serving(app, "v1")
	if v := b.rollout(app); v.Revision != 1 {
		t.Fatalf("app at revision %d after the rollback", v.Revision)
	}
}

// cgiSpec serves /cgi-bin/x answering with status %[3]s and body
// "%[2]s from cgi", and a static / for the health check.
const cgiSpec = `name: %[1]s
image: berth-test/busybox:latest
command:
  - sh
  - -c
  - |
    mkdir -p /www/cgi-bin && echo ok > /www/index.html
    printf '%%s\n' "$SCRIPT" > /www/cgi-bin/x && chmod +x /www/cgi-bin/x
    exec httpd -f -p 8080 -h /www
env:
  SCRIPT: |
    #!/bin/sh
    printf 'Status: %[3]s\r\nContent-Type: text/plain\r\n\r\n%[2]s from cgi\n'
instances: 2
resources: {cpu: 0.05, memory: 32Mi}
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}, interval: 500ms, retries: 2}
stopGracePeriod: 2s
routes: [{host: %[1]s.test, path: /, port: http}]
rollout:
  type: canary
  canary:
    steps: [{weight: 50}, {pause: {}}]
    analysis: {window: 30s, maxErrorRate: 5, minRequests: 20}
`

// TestCanaryAnalysisRollsBackOnErrors: a canary answering 503 while its
// health check passes is rolled back by the analysis of the router's
// figures, with the error rate in the reason.
func TestCanaryAnalysisRollsBackOnErrors(t *testing.T) {
	b := startBerth(t)
	app := "ana-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(cgiSpec, app, "v1", "200 OK")))
	addr := b.routerAddr()
	o := loadOptions{Addr: addr, Host: app + ".test", Path: "/cgi-bin/x", Max: 20, Workers: 2}
	eventually(t, 2*time.Minute, "v1 serving", func() bool {
		r := runLoad(t, o, nil)
		return r.ByBody["v1"] == 20
	})
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(cgiSpec, app, "v2", "503 Service Unavailable")))
	// The weight step waits the analysis window with the canary serving.
	b.waitRollout(app, 2, model.RolloutProgressing, func(ro *model.Rollout) bool { return ro.Counts.NewReady >= 1 })
	o.Max, o.Pause = 400, 20*time.Millisecond
	finish := background(t, o)
	ro := b.waitRollout(app, 2, model.RolloutRolledBack, nil)
	res := finish()
	t.Logf("load during the analysis: %s", res)
	if !strings.Contains(ro.Reason, "canary analysis: revision 2 answered") || !strings.Contains(ro.Reason, "above maxErrorRate 5%") {
		t.Fatalf("rollback reason: %q", ro.Reason)
	}
	o.Max, o.Pause = 20, 0
	eventually(t, time.Minute, "v1 serving again", func() bool {
		r := runLoad(t, o, nil)
		return r.ByBody["v1"] == 20
	})
}
