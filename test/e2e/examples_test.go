package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestExamplesApply: the specs shipped in examples/ apply as-is and
// converge, and the worker logs what it promises.
func TestExamplesApply(t *testing.T) {
	b := startBerth(t)
	for _, f := range []string{"../../examples/hello.yaml", "../../examples/worker.yaml"} {
		out := b.mustCLI("apply", "-f", f, "--wait", "--timeout", "2m")
		if !strings.Contains(out, "converged") {
			t.Fatalf("%s: %s", f, out)
		}
	}
	eventually(t, 30*time.Second, "worker output", func() bool {
		return strings.Contains(b.mustCLI("logs", "worker"), "(QUEUE=jobs)")
	})
	b.mustCLI("rm", "hello", "--wait", "--timeout", "1m")
	b.mustCLI("rm", "worker", "--wait", "--timeout", "1m")
}

// TestServerAndTokenOverrides: flags beat the environment, which beats
// the context file; a wrong token is refused with a hint.
func TestServerAndTokenOverrides(t *testing.T) {
	b := startBerth(t)
	tok := readToken(t, b)
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), append([]string{"BERTH_CONFIG=" + t.TempDir() + "/none.json"}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(nil, "apps"); err == nil || !strings.Contains(out, "no berth server known") {
		t.Fatalf("no context: %v %s", err, out)
	}
	if out, err := run([]string{"BERTH_SERVER=http://" + b.listen, "BERTH_TOKEN=" + tok}, "apps"); err != nil {
		t.Fatalf("env: %v %s", err, out)
	}
	if out, err := run(nil, "apps", "--server", "http://"+b.listen, "--token", tok); err != nil {
		t.Fatalf("flags: %v %s", err, out)
	}
	out, err := run([]string{"BERTH_SERVER=http://" + b.listen, "BERTH_TOKEN=" + tok}, "apps", "--token", "wrong")
	if err == nil || !strings.Contains(out, "missing or invalid token") {
		t.Fatalf("flag should override env: %v %s", err, out)
	}
}

// TestNativeExamplesApply: the README's native-runtime walk-through — a
// docker-save import, examples/hello-oci.yaml on crun, the same app moved
// to gVisor, and examples/hello-process.yaml — works as written.
func TestNativeExamplesApply(t *testing.T) {
	b := startBerth(t)
	t.Cleanup(func() { os.RemoveAll("/tmp/hello-process") })
	tarball := t.TempDir() + "/busybox.tar"
	if out, err := exec.Command("docker", "save", "-o", tarball, "berth-test/busybox:latest").CombinedOutput(); err != nil {
		t.Fatalf("docker save: %v\n%s", err, out)
	}
	b.mustCLI("image", "import", tarball)
	for _, f := range []string{"../../examples/hello-oci.yaml", "../../examples/hello-process.yaml"} {
		if out := b.mustCLI("apply", "-f", f, "--wait", "--timeout", "2m"); !strings.Contains(out, "converged") {
			t.Fatalf("%s: %s", f, out)
		}
	}
	spec, err := os.ReadFile("../../examples/hello-oci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sandboxed := strings.Replace(string(spec), "runtime: crun", "runtime: sandbox", 1)
	if out := b.mustCLI("apply", "-f", writeSpec(t, sandboxed), "--wait", "--timeout", "3m"); !strings.Contains(out, "revision 2") {
		t.Fatalf("move to sandbox: %s", out)
	}
	for _, in := range b.instances("hello-oci") {
		if body := get(t, in.HostPorts["http"]); !strings.HasPrefix(body, "hello from ") {
			t.Fatalf("hello-oci served %q", body)
		}
	}
	if body := get(t, b.instances("hello-process")[0].HostPorts["http"]); body != "hello from a process\n" {
		t.Fatalf("hello-process served %q", body)
	}
}
