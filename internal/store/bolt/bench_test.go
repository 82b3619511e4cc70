package bolt

import (
	"context"
	"fmt"
	"testing"

	"github.com/berth-dev/berth/internal/store"
)

func BenchmarkTxnPut(b *testing.B) {
	s, err := Open(b.TempDir()+"/b.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	val := make([]byte, 512)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Txn(context.Background(), store.Txn{Ops: []store.Op{store.Put(fmt.Sprintf("/k/%d", i%1000), val)}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList10k(b *testing.B) {
	s, err := Open(b.TempDir()+"/b.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var ops []store.Op
	for i := 0; i < 10000; i++ {
		ops = append(ops, store.Put(fmt.Sprintf("/k/%05d", i), make([]byte, 512)))
	}
	if _, err := s.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.List(context.Background(), "/k/"); err != nil {
			b.Fatal(err)
		}
	}
}
