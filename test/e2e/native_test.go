package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// nativeSpec runs busybox httpd under driver oci (or process, with no
// image) and serves "$GREETING from $HOSTNAME".
const nativeSpec = `name: %s
image: %s
driver: oci
runtime: %s
command: ["sh", "-c", "mkdir -p /www && echo \"$GREETING from $HOSTNAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
env: {GREETING: %s}
instances: %d
resources: {cpu: 0.2, memory: 64Mi}
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}, interval: 1s}
stopGracePeriod: 2s
`

// TestOCIFromRegistry: pull from a real registry with progress, run on
// runc, scale, refuse to remove an image in use, remove everything and
// leave no mount, namespace or rule behind.
func TestOCIFromRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, digest := reg.PushBusybox(t, "berth-test/busybox:1")
	b := startBerth(t)

	out := b.mustCLI("image", "pull", ref)
	if !strings.Contains(out, "pulled "+ref) || !strings.Contains(out, digest[:19]) {
		t.Fatalf("image pull output:\n%s", out)
	}
	if ls := b.mustCLI("image", "ls"); !strings.Contains(ls, ref) || !strings.Contains(ls, "linux/amd64") {
		t.Fatalf("image ls:\n%s", ls)
	}
	app := "oci-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, ref, "runc", "hello", 2)), "--wait", "--timeout", "2m")
	checkServing(t, b, app, 2, "hello")
	if ps := b.mustCLI("ps", app); strings.Count(ps, "healthy") != 2 {
		t.Fatalf("ps:\n%s", ps)
	}
	b.mustCLI("scale", app, "3", "--wait", "--timeout", "2m")
	checkServing(t, b, app, 3, "hello")
	if out, err := b.cli("image", "rm", ref); err == nil || !strings.Contains(out, "in use") {
		t.Fatalf("image rm of an image in use: err %v\n%s", err, out)
	}
	// A new revision replaces every instance.
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, ref, "runc", "bonjour", 3)), "--wait", "--timeout", "3m")
	checkServing(t, b, app, 3, "bonjour")

	b.mustCLI("rm", app, "--wait", "--timeout", "2m")
	b.mustCLI("image", "rm", ref)
	if ls := b.mustCLI("image", "ls"); strings.Contains(ls, ref) {
		t.Fatalf("image still listed after rm:\n%s", ls)
	}
	assertNoNativeLeftovers(t, b)
}

// TestOCIRuntimes runs the same app under crun and under gVisor (runtime
// sandbox), and shows the scheduler's reason when a runtime is missing.
func TestOCIRuntimes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushBusybox(t, "berth-test/busybox:1")
	b := startBerth(t)
	for _, rt := range []string{"crun", "sandbox"} {
		app := rt + "-" + randHex(3)
		b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, ref, rt, "hi-"+rt, 1)), "--wait", "--timeout", "3m")
		checkServing(t, b, app, 1, "hi-"+rt)
		b.mustCLI("rm", app, "--wait", "--timeout", "2m")
	}
	assertNoNativeLeftovers(t, b)

	// A node that offers only runc says so for an app that asks for crun.
	only := startBerth(t, "--runtimes", "runc")
	var nodes string
	eventually(t, 30*time.Second, "the node registered with its runtimes", func() bool {
		nodes = only.mustCLI("nodes", "-o", "json")
		return strings.Contains(nodes, `"runtimes": [`)
	})
	if strings.Contains(nodes, `"crun"`) || !strings.Contains(nodes, `"runc"`) {
		t.Fatalf("node advertises:\n%s", nodes)
	}
	app := "needs-crun-" + randHex(3)
	only.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, ref, "crun", "x", 1)))
	eventually(t, 30*time.Second, "scheduler reason", func() bool {
		v, err := only.c.GetApp(t.Context(), "", app)
		return err == nil && strings.Contains(v.Status.Message, `runtime "crun" not installed`)
	})
}

// TestOCIPullFailures: what a broken image looks like to the user.
func TestOCIPullFailures(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	b := startBerth(t)

	out, err := b.cli("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, "badref", "Not A//Ref", "runc", "x", 1)))
	if err == nil || !strings.Contains(out, "image") || !strings.Contains(out, "invalid image reference") {
		t.Fatalf("invalid reference: err %v\n%s", err, out)
	}
	if apps := b.mustCLI("apps"); strings.Contains(apps, "badref") {
		t.Fatalf("an invalid spec was stored:\n%s", apps)
	}
	cases := map[string]string{
		"unknown":     reg.Ref("berth-test/nothing:1"),    // manifest unknown
		"unreachable": "127.0.0.1:1/berth-test/busybox:1", // nothing listens
	}
	for name, ref := range cases {
		app := name + "-" + randHex(3)
		b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, ref, "runc", "x", 1)))
		eventually(t, time.Minute, name+" failure reported", func() bool {
			for _, in := range b.instances(app) {
				msg := strings.ToLower(in.Status.Message)
				if strings.Contains(msg, "unknown") || strings.Contains(msg, "connection refused") {
					return strings.Contains(in.Status.Message, ref[:strings.LastIndex(ref, ":")])
				}
			}
			return false
		})
		b.mustCLI("rm", app, "--wait", "--timeout", "1m")
	}
	if out, err := b.cli("image", "pull", reg.Ref("berth-test/nothing:1")); err == nil || !strings.Contains(strings.ToLower(out), "unknown") {
		t.Fatalf("pull of a missing manifest: err %v\n%s", err, out)
	}
}

// TestImageImportThenRun: a host without registry access imports a
// `docker save` tarball and runs it.
func TestImageImportThenRun(t *testing.T) {
	b := startBerth(t)
	tarball := t.TempDir() + "/busybox.tar"
	if out, err := exec.Command("docker", "save", "-o", tarball, "berth-test/busybox:latest").CombinedOutput(); err != nil {
		t.Fatalf("docker save: %v\n%s", err, out)
	}
	if out := b.mustCLI("image", "import", tarball); !strings.Contains(out, "imported") || !strings.Contains(out, "berth-test/busybox:latest") {
		t.Fatalf("import:\n%s", out)
	}
	app := "imported-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, app, "berth-test/busybox:latest", "runc", "imported", 1)), "--wait", "--timeout", "2m")
	checkServing(t, b, app, 1, "imported")
}

const processSpec = `name: %s
driver: process
command: ["/bin/busybox", "sh", "-c", "mkdir -p %[2]s && echo \"hello from $HOSTNAME\" > %[2]s/index.html && exec /bin/busybox httpd -f -p 8080 -h %[2]s"]
resources: {cpu: 0.1, memory: 32Mi}
ports: [{name: http, containerPort: 8080}]
health: {tcp: {port: http}, interval: 1s}
stopGracePeriod: 2s
`

// TestProcessDriverSurvivesBerthKill: a host process with its own netns,
// published port and health check keeps running through kill -9 of berth
// and is adopted, not restarted, by the next start.
func TestProcessDriverSurvivesBerthKill(t *testing.T) {
	b := startBerth(t)
	www := t.TempDir()
	app := "proc-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(processSpec, app, www)), "--wait", "--timeout", "2m")
	checkServing(t, b, app, 1, "hello")
	before := b.instances(app)[0]

	b.kill()
	b.start()
	eventually(t, time.Minute, "reattached", func() bool {
		ev := b.mustCLI("events", "--app", app)
		return strings.Contains(ev, "Reattached")
	})
	after := b.instances(app)
	if len(after) != 1 || after[0].ID != before.ID || after[0].Status.Restarts != 0 ||
		after[0].Status.StartedAt == nil || before.Status.StartedAt == nil || !after[0].Status.StartedAt.Equal(*before.Status.StartedAt) {
		t.Fatalf("before %+v\nafter %+v", before.Status, after)
	}
	checkServing(t, b, app, 1, "hello")
	b.mustCLI("rm", app, "--wait", "--timeout", "1m")
	assertNoNativeLeftovers(t, b)
}

// assertNoNativeLeftovers checks that removed apps left no overlay mount,
// network namespace or iptables rule behind.
func assertNoNativeLeftovers(t *testing.T, b *berth) {
	t.Helper()
	eventually(t, 30*time.Second, "no workload mounts", func() bool {
		for _, m := range mountsBelow(b.dataDir) {
			if !strings.HasSuffix(m, "null-netns") { // runsc's per-node namespace
				return false
			}
		}
		return true
	})
	eventually(t, 30*time.Second, "no attachment, namespace or port claim", func() bool {
		for _, d := range []string{"attachments", "ports"} {
			if left, _ := os.ReadDir(filepath.Join(b.dataDir, "network", d)); len(left) > 0 {
				return false
			}
		}
		return true
	})
	rules, _ := exec.Command("iptables-save").Output()
	prefix := strings.TrimSuffix(b.subnet, ".0/24") + "."
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.Contains(line, prefix) && !strings.Contains(line, prefix+"0/24") {
			t.Errorf("iptables rule left behind: %s", line)
		}
	}
}
