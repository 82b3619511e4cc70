package bolt

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/store"
)

// Reproduce with: go test -run '^$' -bench . -benchmem ./internal/store/bolt

// BenchmarkTxnPut is one writer committing one 512-byte put per Txn: one
// fsync per Txn.
func BenchmarkTxnPut(b *testing.B) {
	s := open(b, Options{})
	val := make([]byte, 512)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%d", i%1000), val)}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTxnPutParallel is 32 writers committing at once; group commit
// shares each fsync among the Txns queued during the previous one.
func BenchmarkTxnPutParallel(b *testing.B) {
	s := open(b, Options{})
	val := make([]byte, 512)
	ctx := context.Background()
	b.SetParallelism(16) // x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%d", i%1000), val)}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTxnCASConflict is a compare that fails: no fsync is needed.
func BenchmarkTxnCASConflict(b *testing.B) {
	s := open(b, Options{})
	put(b, s, "/k", "v")
	ctx := context.Background()
	t := store.Txn{Compares: []store.Compare{{Key: "/k", ModRev: 0}}, Ops: []store.Op{store.Put("/k", nil)}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Txn(ctx, t); err == nil {
			b.Fatal("compare held")
		}
	}
}

func fill(b *testing.B, s *Store, n int) {
	b.Helper()
	for i := 0; i < n; i += 1000 {
		var ops []store.Op
		for j := i; j < i+1000 && j < n; j++ {
			ops = append(ops, store.Put(fmt.Sprintf("/k/%05d", j), make([]byte, 512)))
		}
		if _, err := s.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads one 512-byte key out of 10,000.
func BenchmarkGet(b *testing.B) {
	s := open(b, Options{})
	fill(b, s, 10000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(ctx, fmt.Sprintf("/k/%05d", i%10000)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList10k lists 10,000 keys of 512 bytes.
func BenchmarkList10k(b *testing.B) {
	s := open(b, Options{})
	fill(b, s, 10000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if kvs, _, err := s.List(ctx, "/k/"); err != nil || len(kvs) != 10000 {
			b.Fatal(len(kvs), err)
		}
	}
}

// BenchmarkWatchFanOut commits one put per op and waits until every
// watcher has received it.
func BenchmarkWatchFanOut(b *testing.B) {
	for _, watchers := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) {
			s := open(b, Options{})
			ctx := context.Background()
			var wg sync.WaitGroup
			chans := make([]<-chan store.Event, watchers)
			for i := range chans {
				ch, err := s.Watch(ctx, "/k/", 0)
				if err != nil {
					b.Fatal(err)
				}
				chans[i] = ch
			}
			b.ResetTimer()
			for _, ch := range chans {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < b.N; n++ {
						if _, ok := <-ch; !ok {
							b.Error("watcher dropped")
							return
						}
					}
				}()
			}
			val := make([]byte, 512)
			for i := 0; i < b.N; i++ {
				if _, err := s.Txn(ctx, store.Txn{Ops: []store.Op{store.Put("/k/x", val)}}); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		})
	}
}

// BenchmarkWatchReplay starts a watch that replays 10,000 revisions of
// history (one 512-byte put each) and reads it to the end.
func BenchmarkWatchReplay(b *testing.B) {
	s := open(b, Options{})
	val := make([]byte, 512)
	var wg sync.WaitGroup
	for w := 0; w < 100; w++ { // parallel writers: group commit makes this fast
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%d/%d", w, i), val)}}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := s.Watch(ctx, "/k/", 0)
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < 10000; n++ {
			<-ch
		}
		cancel()
	}
}
