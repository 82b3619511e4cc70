package loop

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// Changes that keep coming while passes are slow (a large cluster
// joining) are coalesced: the loop spends at most about half its time in
// passes, and the last pass still sees the last change.
func TestSlowPassesRestBetweenChanges(t *testing.T) {
	st := bolttest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var busy time.Duration
	var first, last time.Time
	seen := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Name: "test", Store: st, Prefixes: []string{"/k/"}, Resync: time.Hour}, func(ctx context.Context) (bool, error) {
			start := time.Now()
			kvs, _, err := st.List(ctx, "/k/")
			time.Sleep(20 * time.Millisecond) // a pass over thousands of nodes
			if err != nil {
				return false, err
			}
			mu.Lock()
			defer mu.Unlock()
			if first.IsZero() {
				first = start
			}
			busy += time.Since(start)
			last, seen = time.Now(), len(kvs)
			return false, nil
		})
	}()
	const writes = 100
	for i := range writes {
		if _, err := st.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%03d", i), []byte("v"))}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := seen
		mu.Unlock()
		if n == writes {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if seen != writes {
		t.Fatalf("the last pass saw %d keys, want %d", seen, writes)
	}
	if share := float64(busy) / float64(last.Sub(first)); share > 0.7 {
		t.Fatalf("the loop reconciled %.0f%% of the time through a stream of changes, want about half", 100*share)
	}
}
