package bolt

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// The tests here re-execute the test binary as a child process that runs
// TestChildProcess in the mode named by this variable.
const childEnv = "BERTH_BOLT_TEST_CHILD"

// TestChildProcess is not a test: it is the child side of the multi-process
// tests below, and does nothing unless started by them.
func TestChildProcess(t *testing.T) {
	mode, path, ok := strings.Cut(os.Getenv(childEnv), ":")
	if !ok {
		t.Skip("only runs as a child of another test")
	}
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	switch mode {
	case "write":
		// Several writers, so acknowledgements come from group commits;
		// each line is one acknowledged Txn.
		var out sync.Mutex
		for w := 0; w < 4; w++ {
			go func() {
				for i := 0; ; i++ {
					k := fmt.Sprintf("/ack/%d/%06d", w, i)
					rev, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(k, []byte(k))}})
					out.Lock()
					if err != nil {
						fmt.Println("txn:", err)
						os.Exit(2)
					}
					fmt.Println(k, rev)
					out.Unlock()
				}
			}()
		}
		select {}
	case "hold":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // hold the file until stdin closes
		s.Close()
		os.Exit(0)
	}
	os.Exit(3)
}

// startChild runs TestChildProcess in mode on path and returns its stdout.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode+":"+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(out), stdin
}

// TestAcknowledgedWritesSurviveKill9 lets a child commit from several
// goroutines, kills it with SIGKILL mid-stream, and checks that every
// acknowledged write is in the reopened store, with a revision counter and
// change log that agree with the data.
func TestAcknowledgedWritesSurviveKill9(t *testing.T) {
	const killAfter = 300
	db := filepath.Join(t.TempDir(), "berth.db")
	cmd, out, _ := startChild(t, "write", db)
	acked := map[string]int64{}
	var maxRev int64
	for len(acked) < killAfter && out.Scan() {
		k, r, ok := strings.Cut(out.Text(), " ")
		rev, err := strconv.ParseInt(r, 10, 64)
		if !ok || err != nil || !strings.HasPrefix(k, "/ack/") {
			t.Fatalf("child: %s", out.Text())
		}
		acked[k] = rev
		maxRev = max(maxRev, rev)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < killAfter {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}

	s, err := Open(db, Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	for k, rev := range acked {
		kv, err := s.Get(ctx, k)
		if err != nil || kv.ModRev != rev || string(kv.Value) != k {
			t.Fatalf("acknowledged write %s at %d after kill -9: %+v, %v", k, rev, kv, err)
		}
	}
	// Each Txn wrote one new key, so the keys' revisions must be exactly
	// 1..Rev, and the change log must replay the same.
	cur := curRev(t, s)
	if cur < maxRev {
		t.Fatalf("revision went back from %d to %d", maxRev, cur)
	}
	kvs, listRev, err := s.List(ctx, "/ack/")
	if err != nil || listRev != cur || int64(len(kvs)) != cur {
		t.Fatalf("List: %d keys at rev %d (Rev %d), %v; want one key per revision", len(kvs), listRev, cur, err)
	}
	seen := map[int64]string{}
	for _, kv := range kvs {
		if kv.ModRev < 1 || kv.ModRev > cur || seen[kv.ModRev] != "" {
			t.Fatalf("key %s at revision %d (Rev %d, already %q)", kv.Key, kv.ModRev, cur, seen[kv.ModRev])
		}
		seen[kv.ModRev] = kv.Key
	}
	ch, err := s.Watch(ctx, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for r := int64(1); r <= cur; r++ {
		select {
		case e := <-ch:
			if e.KV.ModRev != r || e.KV.Key != seen[r] {
				t.Fatalf("change log replays %s at %d, want %s at %d", e.KV.Key, e.KV.ModRev, seen[r], r)
			}
		case <-time.After(time.Minute):
			t.Fatalf("change log replay hung at revision %d", r)
		}
	}
	if r := put(t, s, "/after", "v"); r != cur+1 {
		t.Fatalf("first write after recovery at %d, want %d", r, cur+1)
	}
	t.Logf("%d acknowledged writes, %d committed, all present after kill -9", len(acked), cur)
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	db := filepath.Join(t.TempDir(), "berth.db")
	cmd, out, stdin := startChild(t, "hold", db)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("child: %q", out.Text())
	}
	_, err := Open(db, Options{LockTimeout: 200 * time.Millisecond})
	want := "open " + db + ": data file is in use by another berth process"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Open of a file another process holds: %v\nwant prefix %q", err, want)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s, err := Open(db, Options{})
	if err != nil {
		t.Fatalf("Open after the other process exited: %v", err)
	}
	s.Close()
}
