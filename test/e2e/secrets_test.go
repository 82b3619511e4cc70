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

// TestImagePullSecret: an app pulls from a registry that wants a password
// with the credentials of a berth secret — under driver oci and docker —
// while the same app without the secret fails with the registry's
// refusal; the secret's value is not found in clear in berth's data dir.
func TestImagePullSecret(t *testing.T) {
	const password = "berth-test-pw-7f3a"
	reg := registrytest.Start(t, registrytest.Options{Username: "ci", Password: password})
	ref, _ := reg.PushBusybox(t, "berth-test/private:1")
	b := startBerth(t)

	out := b.mustCLI("secret", "set", "regcred", "--from-literal", "username=ci", "--from-literal", "password="+password)
	if !strings.Contains(out, "keys: password, username") {
		t.Fatalf("secret set: %s", out)
	}
	if ls := b.mustCLI("secret", "ls", "-o", "json"); strings.Contains(ls, password) || !strings.Contains(ls, "regcred") {
		t.Fatalf("secret ls shows a value or misses the secret:\n%s", ls)
	}

	noAuth := "nosecret-" + randHex(3)
	b.mustCLI("apply", "-f", writeSpec(t, fmt.Sprintf(nativeSpec, noAuth, ref, "runc", "x", 1)))
	eventually(t, time.Minute, "unauthorized pull reported", func() bool {
		for _, in := range b.instances(noAuth) {
			if strings.Contains(strings.ToLower(in.Status.Message), "unauthorized") {
				return true
			}
		}
		return false
	})
	b.mustCLI("rm", noAuth, "--wait", "--timeout", "1m")

	for _, driver := range []string{"oci", "docker"} {
		app := driver + "-private-" + randHex(3)
		spec := fmt.Sprintf(nativeSpec, app, ref, "runc", "private", 1) + "imagePullSecret: regcred\n"
		if driver == "docker" {
			spec = strings.Replace(strings.Replace(spec, "driver: oci\n", "", 1), "runtime: runc\n", "", 1)
		}
		b.mustCLI("apply", "-f", writeSpec(t, spec), "--wait", "--timeout", "2m")
		checkServing(t, b, app, 1, "private")
		b.mustCLI("rm", app, "--wait", "--timeout", "1m")
	}
	if driverImage(t, ref) {
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
	}
	if out, err := exec.Command("grep", "-rl", password, b.dataDir).CombinedOutput(); err == nil {
		t.Fatalf("the password is stored in clear in:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(b.dataDir, "secrets.key")); err != nil {
		t.Fatalf("no secrets key: %v", err)
	}
}

// driverImage reports whether Docker has ref (pulled by the docker app).
func driverImage(t *testing.T, ref string) bool {
	t.Helper()
	return exec.Command("docker", "image", "inspect", ref).Run() == nil
}
