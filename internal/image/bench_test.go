package image

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// BenchmarkPull pulls a ~100 MB, 4-layer image of random data from a
// local registry into an empty store per iteration.
func BenchmarkPull(b *testing.B) {
	requireRoot(b)
	reg := registrytest.Start(b, registrytest.Options{})
	ref, _ := reg.PushRandom(b, "bench/random:1", registrytest.LargeSize, 4, 1)
	parent := tempDir(b, "bench")
	b.SetBytes(registrytest.LargeSize)
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(parent, "store")
		os.RemoveAll(dir)
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Pull(bg(), ref, PullOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

func TestBenchPull(t *testing.T) {
	requireRoot(t)
	registrytest.Require(t, registrytest.Binary, "docker-registry")
	res, err := BenchPull(bg(), BenchOptions{Size: 2 << 20, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cold <= 0 || res.Warm <= 0 || res.Bytes != 2<<20 || res.MBps() <= 0 {
		t.Errorf("result %+v", res)
	}
}
