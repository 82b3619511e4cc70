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
