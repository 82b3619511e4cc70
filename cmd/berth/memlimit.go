package main

import (
	"fmt"
	"runtime/debug"

	"github.com/docker/go-units"
)

// setMemoryLimit sets Go's soft memory limit from a size such as 256MiB
// or 1g (binary units); "" keeps the default (GOMEMLIMIT, else none).
// Under the limit the GC runs more often instead of letting the heap
// grow to twice what is live.
func setMemoryLimit(size string) error {
	if size == "" {
		return nil
	}
	n, err := units.RAMInBytes(size)
	if err != nil || n <= 0 {
		return fmt.Errorf("--memory-limit %q: want a size such as 256MiB or 1GiB", size)
	}
	debug.SetMemoryLimit(n)
	return nil
}
