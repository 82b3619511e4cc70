package image

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// BenchOptions configure BenchPull.
type BenchOptions struct {
	// Size is the image's total layer bytes; 0 means ~100 MB
	// (registrytest.LargeSize).
	Size int64
	// Layers is the number of layers; 0 means 4.
	Layers int
	// TempDir is where the throw-away store is made; empty means os.TempDir.
	TempDir string
}

// BenchResult is what BenchPull measured.
type BenchResult struct {
	// Bytes and Layers describe the image pulled.
	Bytes  int64
	Layers int
	// Cold is a pull into an empty store: download, verify, unpack, fsync.
	Cold time.Duration
	// Warm is the same pull again: manifest only, no layer downloaded.
	Warm time.Duration
}

// MBps is the cold pull's throughput in MB/s.
func (r BenchResult) MBps() float64 {
	if r.Cold <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Cold.Seconds()
}

// BenchPull times pulling a large image of random data from a local
// docker-registry (127.0.0.1, started and pushed to untimed) into a fresh
// store, cold and then warm. Everything it makes is removed before it
// returns. It needs /usr/bin/docker-registry and root (snapshots keep
// ownership and device files).
func BenchPull(ctx context.Context, o BenchOptions) (BenchResult, error) {
	if o.Size <= 0 {
		o.Size = registrytest.LargeSize
	}
	if o.Layers <= 0 {
		o.Layers = 4
	}
	reg, err := registrytest.Launch(registrytest.Options{})
	if err != nil {
		return BenchResult{}, err
	}
	defer reg.Close()
	img, err := registrytest.Random(o.Size, o.Layers, 1)
	if err != nil {
		return BenchResult{}, fmt.Errorf("build bench image: %w", err)
	}
	ref, _, err := reg.PushImage(ctx, "bench/random:1", img)
	if err != nil {
		return BenchResult{}, err
	}
	dir, err := os.MkdirTemp(o.TempDir, "berth-bench-images-*")
	if err != nil {
		return BenchResult{}, err
	}
	defer os.RemoveAll(dir)
	s, err := Open(dir, Options{})
	if err != nil {
		return BenchResult{}, err
	}
	defer s.Close()

	res := BenchResult{Bytes: o.Size, Layers: o.Layers}
	start := time.Now()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		return res, err
	}
	res.Cold = time.Since(start)
	start = time.Now()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		return res, err
	}
	res.Warm = time.Since(start)
	return res, nil
}
