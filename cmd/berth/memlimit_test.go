package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	if err := setMemoryLimit(""); err != nil || debug.SetMemoryLimit(-1) != before {
		t.Fatalf(`"" changed the limit (err %v)`, err)
	}
	if err := setMemoryLimit("215MiB"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 215<<20 {
		t.Fatalf("limit %d, want %d", got, 215<<20)
	}
	for _, bad := range []string{"abc", "-5MiB", "0", "12XB"} {
		if err := setMemoryLimit(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if got := debug.SetMemoryLimit(-1); got != 215<<20 || got == math.MaxInt64 {
		t.Fatalf("a refused size changed the limit to %d", got)
	}
}
