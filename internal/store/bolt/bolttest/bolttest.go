// Package bolttest opens a throw-away bolt store for tests.
package bolttest

import (
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/store/bolt"
)

// Open opens a store in a temporary directory, closed when the test ends.
func Open(t testing.TB) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
