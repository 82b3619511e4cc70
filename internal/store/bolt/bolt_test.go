package bolt

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/storetest"
)

func open(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "berth.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, Options{HistoryRevisions: 50}) },
		storetest.Options{HistoryRevisions: 50})
}

func TestReopenKeepsData(t *testing.T) {
	p := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put("/k", []byte("v"))}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Get(context.Background(), "/k")
	if err != nil || string(kv.Value) != "v" || kv.ModRev != rev {
		t.Fatalf("after reopen: %+v %v", kv, err)
	}
	if cur, _ := s.Rev(context.Background()); cur != rev {
		t.Fatalf("revision %d after reopen, want %d", cur, rev)
	}
}

func TestOpenRefusesCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.db")
	s, err := Open(truncated, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		_, _ = s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%d", i), make([]byte, 512))}})
	}
	s.Close()
	if err := os.Truncate(truncated, 1000); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{garbage, truncated} {
		if _, err := Open(p, Options{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("Open(%s) = %v, want a corrupt-data error", filepath.Base(p), err)
		}
	}
}

func TestOpenRefusesLockedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's flock is per open file description, so a second Open in this
	// process contends like another process would.
	if _, err := Open(p, Options{LockTimeout: 200 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "in use by another berth process") {
		t.Fatalf("second Open: %v", err)
	}
}

func TestSlowWatcherIsDropped(t *testing.T) {
	s := open(t, Options{WatchBuffer: 4})
	ch, err := s.Watch(context.Background(), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put("/k", []byte("v"))}}); err != nil {
			t.Fatal(err) // writers never block on a slow watcher
		}
	}
	n := 0
	for range ch {
		n++
	}
	if n != 4 {
		t.Fatalf("slow watcher got %d events before being dropped, want 4", n)
	}
}

// TestAcknowledgedWritesSurviveKill9 runs a child that writes and prints
// each acknowledged key, kills it with SIGKILL mid-stream, and checks that
// every acknowledged write is in the reopened store.
func TestAcknowledgedWritesSurviveKill9(t *testing.T) {
	if path := os.Getenv("BERTH_TEST_KILL9_DB"); path != "" {
		s, err := Open(path, Options{})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		for i := 0; ; i++ {
			rev, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/ack/%06d", i), []byte("v"))}})
			if err != nil {
				fmt.Println("txn:", err)
				os.Exit(2)
			}
			fmt.Printf("%d %d\n", i, rev)
		}
	}
	db := filepath.Join(t.TempDir(), "berth.db")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAcknowledgedWritesSurviveKill9$")
	cmd.Env = append(os.Environ(), "BERTH_TEST_KILL9_DB="+db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked, lastRev := -1, int64(0)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("child: %s", sc.Text())
		}
		acked, _ = strconv.Atoi(f[0])
		lastRev, _ = strconv.ParseInt(f[1], 10, 64)
		if acked == 200 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	_ = cmd.Wait()
	if acked < 200 {
		t.Fatalf("child acknowledged only %d writes", acked)
	}
	s, err := Open(db, Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	for i := 0; i <= acked; i++ {
		if _, err := s.Get(context.Background(), fmt.Sprintf("/ack/%06d", i)); err != nil {
			t.Fatalf("acknowledged write %d lost after kill -9: %v", i, err)
		}
	}
	if cur, _ := s.Rev(context.Background()); cur < lastRev {
		t.Fatalf("revision went back from %d to %d", lastRev, cur)
	}
}
