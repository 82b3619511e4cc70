package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

func clientWait() client.WaitOptions { return client.WaitOptions{} }

// TestInvalidSpecs: bad specs get a 400 naming the field, and nothing is
// stored.
func TestInvalidSpecs(t *testing.T) {
	b := startBerth(t)
	cases := []struct{ name, body, field string }{
		{"unknown field", "name: bad1\nimage: berth-test/busybox:latest\nimagee: x\n", "imagee"},
		{"negative instances", "name: bad2\nimage: berth-test/busybox:latest\ninstances: -1\n", "instances"},
		{"bad memory unit", "name: bad3\nimage: berth-test/busybox:latest\nresources: {memory: 64Qi}\n", "resources.memory"},
		{"missing image", "name: bad4\n", "image"},
		{"duplicate port name", "name: bad5\nimage: berth-test/busybox:latest\nports: [{name: http, containerPort: 80}, {name: http, containerPort: 81}]\n", "ports[1].name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, apiErr := rawApply(t, b, tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("HTTP %d, want 400 (%+v)", code, apiErr)
			}
			found := false
			for _, f := range apiErr.Fields {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Fatalf("400 does not name field %q: %+v", tc.field, apiErr)
			}
			apps, err := b.c.ListApps(context.Background(), "", true)
			if err != nil || len(apps) != 0 {
				t.Fatalf("something was stored: %v %v", apps, err)
			}
			// The CLI exits non-zero and shows the field.
			out, err := b.cli("apply", "-f", writeSpec(t, tc.body))
			if err == nil || !strings.Contains(out, tc.field) {
				t.Fatalf("CLI: err=%v out=%s", err, out)
			}
		})
	}
	// No token → 401.
	resp, err := http.Get("http://" + b.listen + "/v1/apps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d, want 401", resp.StatusCode)
	}
}

func rawApply(t *testing.T, b *berth, body string) (int, model.APIError) {
	t.Helper()
	tok := readToken(t, b)
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.listen+"/v1/apps", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e model.APIError
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, e
}

func readToken(t *testing.T, b *berth) string {
	raw, err := os.ReadFile(filepath.Join(b.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// TestFaults: a missing image, an impossible resource request and a
// crashing process each show up with the reason, without a tight loop.
func TestFaults(t *testing.T) {
	b := startBerth(t)
	ctx := context.Background()

	t.Run("missing image", func(t *testing.T) {
		// --wait gives up early with the runtime's message: retrying will
		// not make the image appear.
		out, err := b.cli("apply", "-f", writeSpec(t, "name: noimg\nimage: berth-test/does-not-exist:1\nrestart: {initialDelay: 500ms, maxDelay: 4s}\n"), "--wait", "--timeout", "5m")
		if err == nil || !strings.Contains(out, "noimg is failing") || !strings.Contains(out, "does-not-exist") || !strings.Contains(out, "failures in a row") {
			t.Fatalf("apply --wait: %v\n%s", err, out)
		}
		eventually(t, time.Minute, "failed instance with pull error", func() bool {
			v, err := b.c.GetApp(ctx, "", "noimg")
			return err == nil && v.Status.Failed == 1 && strings.Contains(v.Status.Message, "does-not-exist")
		})
		ev := b.mustCLI("events", "--app", "noimg")
		if !strings.Contains(ev, "FailedStart") || !strings.Contains(ev, "retrying in") {
			t.Fatalf("events:\n%s", ev)
		}
		b.mustCLI("rm", "noimg", "--wait", "--timeout", "1m")
	})

	t.Run("insufficient memory", func(t *testing.T) {
		b.mustCLI("apply", "-f", writeSpec(t, "name: huge\nimage: berth-test/busybox:latest\nresources: {memory: 1000Gi}\n"))
		eventually(t, 30*time.Second, "scheduler explanation", func() bool {
			v, err := b.c.GetApp(ctx, "", "huge")
			return err == nil && strings.Contains(v.Status.Message, "0/1 nodes fit: insufficient memory (need 1000Gi")
		})
		if ps := b.mustCLI("ps", "huge"); !strings.Contains(ps, "insufficient memory") {
			t.Fatalf("ps does not explain:\n%s", ps)
		}
		out, err := b.cli("apply", "-f", writeSpec(t, "name: huge\nimage: berth-test/busybox:latest\nresources: {memory: 1000Gi}\n"), "--wait", "--timeout", "3s")
		if err == nil || !strings.Contains(out, "insufficient memory") {
			t.Fatalf("--wait should fail with the reason: %v\n%s", err, out)
		}
		b.mustCLI("rm", "huge", "--wait", "--timeout", "1m")
	})

	t.Run("host port conflict stays pending", func(t *testing.T) {
		fixed := "image: berth-test/busybox:latest\ncommand: [sleep, '600']\nports: [{name: p, containerPort: 80, hostPort: 24999}]\nstopGracePeriod: 1s\n"
		b.mustCLI("apply", "-f", writeSpec(t, "name: first\n"+fixed), "--wait", "--timeout", "1m")
		b.mustCLI("apply", "-f", writeSpec(t, "name: second\n"+fixed))
		eventually(t, 30*time.Second, "scheduler explanation", func() bool {
			v, err := b.c.GetApp(ctx, "", "second")
			return err == nil && v.Status.Pending == 1 && strings.Contains(v.Status.Message, "0/1 nodes fit: host port 24999 in use")
		})
		if ev := b.mustCLI("events", "--app", "second"); !strings.Contains(ev, "FailedScheduling") {
			t.Fatalf("events:\n%s", ev)
		}
		// Freeing the port lets the pending instance start.
		b.mustCLI("rm", "first", "--wait", "--timeout", "1m")
		b.mustCLI("apply", "-f", writeSpec(t, "name: second\n"+fixed), "--wait", "--timeout", "1m")
		b.mustCLI("rm", "second", "--wait", "--timeout", "1m")
	})

	t.Run("crashing process restarts with backoff", func(t *testing.T) {
		out, err := b.cli("apply", "-f", writeSpec(t, "name: crashy\nimage: berth-test/busybox:latest\ncommand: [sh, -c, 'echo boom; exit 3']\nports: [{name: p, containerPort: 80}]\nhealth: {tcp: {port: p}}\nrestart: {policy: on-failure, initialDelay: 500ms, maxDelay: 2s}\n"), "--wait", "--timeout", "5m")
		if err == nil || !strings.Contains(out, "crashy is failing") || !strings.Contains(out, "exited with code 3") {
			t.Fatalf("apply --wait on a crash loop: %v\n%s", err, out)
		}
		eventually(t, time.Minute, "two restarts", func() bool {
			insts := b.instances("crashy")
			return len(insts) == 1 && insts[0].Status.Restarts >= 2
		})
		ev := b.mustCLI("events", "--app", "crashy")
		if !strings.Contains(ev, "exited with code 3; restarting in") || !strings.Contains(ev, "Restarted") {
			t.Fatalf("events:\n%s", ev)
		}
		logs := b.mustCLI("logs", "crashy")
		if !strings.Contains(logs, "boom") {
			t.Fatalf("logs: %q", logs)
		}
		b.mustCLI("rm", "crashy", "--wait", "--timeout", "1m")
	})

	t.Run("exit with policy never stays down", func(t *testing.T) {
		spec := writeSpec(t, "name: once\nimage: berth-test/busybox:latest\ncommand: [sh, -c, 'exit 7']\nrestart: {policy: never}\n")
		b.mustCLI("apply", "-f", spec)
		eventually(t, 30*time.Second, "failed with exit code", func() bool {
			insts := b.instances("once")
			return len(insts) == 1 && insts[0].Status.State == model.StateFailed && insts[0].Status.ExitCode == 7
		})
		time.Sleep(2 * time.Second)
		if insts := b.instances("once"); insts[0].Status.Restarts != 0 {
			t.Fatalf("restarted despite policy never: %+v", insts[0].Status)
		}
		// Ended for good: --wait says so at once instead of timing out.
		out, err := b.cli("apply", "-f", spec, "--wait", "--timeout", "5m")
		if err == nil || !strings.Contains(out, "once is failing") || !strings.Contains(out, "exited with code 7") {
			t.Fatalf("apply --wait with policy never: %v\n%s", err, out)
		}
		b.mustCLI("rm", "once", "--wait", "--timeout", "1m")
	})
}

// TestLogsFollow: `berth logs -f` streams lines as the app writes them.
func TestLogsFollow(t *testing.T) {
	b := startBerth(t)
	b.mustCLI("apply", "-f", writeSpec(t, "name: ticker\nimage: berth-test/busybox:latest\ncommand: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']\n"), "--wait", "--timeout", "1m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "logs", "ticker", "-f")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+b.config)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	eventually(t, 20*time.Second, "followed log lines", func() bool { return strings.Count(out.String(), "tick") >= 10 })
	b.mustCLI("rm", "ticker", "--wait", "--timeout", "1m")
}

// TestCorruptDataDir: berth refuses to start on an unreadable store
// instead of starting empty.
func TestCorruptDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "berth.db"), bytes.Repeat([]byte("not a database "), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "up", "--data-dir", dir, "--listen", freePort(t), "--node-name", "berth-test-corrupt")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(dir, "ctx.json"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("berth up started on a corrupt data dir:\n%s", out)
	}
	if !strings.Contains(string(out), "corrupt") {
		t.Fatalf("error does not say the data is corrupt:\n%s", out)
	}
}

// TestHostPortHeldByAnotherProcess: a port of the node's range held by a
// process berth does not know about is reported by the agent and never
// assigned, so the app still starts.
func TestHostPortHeldByAnotherProcess(t *testing.T) {
	b := startBerth(t)
	var first int
	if _, err := fmt.Sscanf(b.ports, "%d-", &first); err != nil {
		t.Fatal(err)
	}
	// Hold the lowest port of the range that is free now.
	var l net.Listener
	for ; l == nil && first < 30000; first++ {
		l, _ = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first))
	}
	first--
	if l == nil {
		t.Fatal("no free port to hold")
	}
	defer l.Close()
	eventually(t, 30*time.Second, "the agent to report the held port", func() bool {
		nodes, err := b.c.Nodes(context.Background())
		return err == nil && len(nodes) == 1 && slices.Contains(nodes[0].PortsInUse, first)
	})
	b.mustCLI("apply", "-f", writeSpec(t, "name: web\nimage: berth-test/busybox:latest\ncommand: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www']\nports: [{name: http, containerPort: 8080}]\nhealth: {http: {port: http}}\nstopGracePeriod: 1s\n"), "--wait", "--timeout", "1m")
	insts := b.instances("web")
	if len(insts) != 1 || insts[0].HostPorts["http"] == first {
		t.Fatalf("instance got the held port: %+v", insts)
	}
	if body := get(t, insts[0].HostPorts["http"]); body != "ok\n" {
		t.Fatalf("served %q", body)
	}
	b.mustCLI("rm", "web", "--wait", "--timeout", "1m")
}
