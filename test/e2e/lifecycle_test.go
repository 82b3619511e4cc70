package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

const webSpec = `name: %s
image: berth-test/busybox:latest
command: ["sh", "-c", "mkdir -p /www && echo \"$GREETING from $HOSTNAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
env: {GREETING: %s}
instances: %d
resources: {cpu: 0.1, memory: 64Mi}
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}, interval: 1s}
stopGracePeriod: 2s
`

// TestLifecycle walks the Foundation story: deploy, serve, scale, roll out
// a new revision, survive kill -9 of berth without restarting anything,
// and remove.
func TestLifecycle(t *testing.T) {
	b := startBerth(t)
	app := "web-" + randHex(3)
	spec := writeSpec(t, fmt.Sprintf(webSpec, app, "hello", 3))

	out := b.mustCLI("apply", "-f", spec, "--wait", "--timeout", "2m")
	if !strings.Contains(out, "converged: 3/3 ready at revision 1") {
		t.Fatalf("apply --wait output:\n%s", out)
	}
	checkServing(t, b, app, 3, "hello")
	apps := b.mustCLI("apps")
	if !strings.Contains(apps, app) || !strings.Contains(apps, "3/3") || !strings.Contains(apps, "rev 1") {
		t.Fatalf("berth apps:\n%s", apps)
	}
	if ps := b.mustCLI("ps", app); strings.Count(ps, "running") != 3 || strings.Count(ps, "healthy") != 3 {
		t.Fatalf("berth ps:\n%s", ps)
	}

	// Re-applying the same spec is a no-op.
	if out := b.mustCLI("apply", "-f", spec); !strings.Contains(out, "unchanged (revision 1)") {
		t.Fatalf("re-apply: %s", out)
	}
	if res := jsonOut[[]model.ApplyResult](t, b, "apply", "-f", spec); len(res) != 1 || res[0].Changed || res[0].App.Revision != 1 {
		t.Fatalf("apply -o json: %+v", res)
	}
	if insts := jsonOut[[]model.Instance](t, b, "ps", app); len(insts) != 3 || insts[0].Status.Health != model.HealthHealthy {
		t.Fatalf("ps -o json: %+v", insts)
	}

	for _, n := range []int{5, 1} {
		b.mustCLI("scale", app, fmt.Sprint(n), "--wait", "--timeout", "2m")
		checkServing(t, b, app, n, "hello")
		eventually(t, 30*time.Second, fmt.Sprintf("%d containers", n), func() bool { return len(b.containers(app)) == n })
	}

	// A changed env var is a new revision; every instance is replaced.
	b.mustCLI("scale", app, "3", "--wait", "--timeout", "2m")
	before := containerIDs(b, app)
	out = b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(webSpec, app, "bonjour", 3)), "--wait", "--timeout", "3m")
	if !strings.Contains(out, "updated to revision 2") {
		t.Fatalf("apply rev 2:\n%s", out)
	}
	checkServing(t, b, app, 3, "bonjour")
	for _, in := range b.instances(app) {
		if in.Revision != 2 {
			t.Fatalf("instance %s at revision %d after rollout", in.ID, in.Revision)
		}
	}
	eventually(t, 30*time.Second, "old containers removed", func() bool {
		after := containerIDs(b, app)
		for _, id := range before {
			for _, a := range after {
				if a == id {
					return false
				}
			}
		}
		return len(after) == 3
	})

	// kill -9 berth; workloads keep running; restart reattaches.
	running := containerIDs(b, app)
	started := startTimes(t, b, running)
	b.kill()
	for _, id := range running {
		if st := inspectState(t, b, id); !st.Running {
			t.Fatalf("container %s stopped when berth was killed", id)
		}
	}
	b.start()
	v, err := b.c.WaitConverged(ctxTimeout(t, time.Minute), model.DefaultNamespace, app, clientWait())
	if err != nil {
		t.Fatalf("not converged after restart: %v (%+v)", err, v.Status)
	}
	time.Sleep(3 * time.Second) // give a wrongly restarting agent time to show itself
	after := containerIDs(b, app)
	if strings.Join(after, ",") != strings.Join(running, ",") {
		t.Fatalf("containers changed across restart:\nbefore %v\nafter  %v", running, after)
	}
	for id, ts := range startTimes(t, b, after) {
		if ts != started[id] {
			t.Fatalf("container %s was restarted (started %s, now %s)", id, started[id], ts)
		}
	}
	checkServing(t, b, app, 3, "bonjour")
	if ev := b.mustCLI("events", "--app", app); !strings.Contains(ev, "Reattached") {
		t.Fatalf("no Reattached events:\n%s", ev)
	}

	out = b.mustCLI("rm", app, "--wait", "--timeout", "2m")
	if !strings.Contains(out, "removed") {
		t.Fatalf("rm: %s", out)
	}
	if left := b.containers(app); len(left) != 0 {
		t.Fatalf("%d containers left after rm", len(left))
	}
	if _, err := b.cli("get", app); err == nil {
		t.Fatal("app still exists after rm")
	}
}

// checkServing asserts n ready instances, each serving want on its port.
func checkServing(t *testing.T, b *berth, app string, n int, want string) {
	t.Helper()
	insts := b.instances(app)
	if len(insts) != n {
		t.Fatalf("%d active instances, want %d", len(insts), n)
	}
	for _, in := range insts {
		port := in.HostPorts["http"]
		if port == 0 {
			t.Fatalf("instance %s has no host port", in.ID)
		}
		if body := get(t, port); !strings.HasPrefix(body, want+" from ") {
			t.Fatalf("instance %s on port %d served %q, want %q...", in.ID, port, body, want)
		}
	}
}

func containerIDs(b *berth, app string) []string {
	var ids []string
	for _, c := range b.containers(app) {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	return ids
}

type containerState struct {
	Running   bool
	StartedAt string
}

func inspectState(t *testing.T, b *berth, id string) containerState {
	t.Helper()
	c, err := b.docker.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return containerState{Running: c.State.Running, StartedAt: c.State.StartedAt}
}

func startTimes(t *testing.T, b *berth, ids []string) map[string]string {
	out := map[string]string{}
	for _, id := range ids {
		out[id] = inspectState(t, b, id).StartedAt
	}
	return out
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// jsonOut runs a CLI command with -o json and decodes its stdout (human
// messages go to stderr).
func jsonOut[T any](t *testing.T, b *berth, args ...string) T {
	t.Helper()
	var v T
	cmd := exec.Command(binary, append(args, "-o", "json")...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+b.config)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("berth %v -o json: %v", args, err)
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("berth %v -o json: %v\n%s", args, err, out)
	}
	return v
}
