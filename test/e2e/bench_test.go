package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// `berth bench cluster` works end to end at a small size: a real server
// child process, simulated agents joining over mTLS, every instance placed
// and running, and one row of figures under the header.
func TestBenchClusterSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "bench", "cluster", "--nodes", "4", "--instances", "40", "--per-app", "10", "--apply-clients", "2", "--server-memory-limit", "200MiB")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("berth bench cluster: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "one apply: p50 ") {
		t.Fatalf("want a header, one row and the apply latency, got:\n%s", stdout.String())
	}
	header, row := strings.Split(lines[0], "\t"), strings.Split(lines[1], "\t")
	if len(header) != len(row) {
		t.Fatalf("%d columns under %d headers:\n%s", len(row), len(header), stdout.String())
	}
	col := map[string]string{}
	for i, h := range header {
		col[h] = row[i]
	}
	if col["nodes"] != "4" || col["instances"] != "40" || col["apply clients"] != "2" {
		t.Fatalf("row %v does not echo the run's size", col)
	}
	// "placements/s (committed)": "N (M)", both positive.
	rates := strings.Fields(strings.NewReplacer("(", "", ")", "").Replace(col["placements/s (committed)"]))
	if len(rates) != 2 || !positive(rates[0]) || !positive(rates[1]) {
		t.Fatalf("placements/s %q: want two positive rates", col["placements/s (committed)"])
	}
	if rss := strings.Fields(col["server RSS (peak; store mmap)"]); len(rss) == 0 || !positive(rss[0]) {
		t.Fatalf("server RSS %q: want a positive size", col["server RSS (peak; store mmap)"])
	}
}

func positive(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f > 0
}
