package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/registrytest"
)

// TestImageGCLoop: the store is collected on its own; past ImageStoreMax
// the least recently used unused image is evicted.
func TestImageGCLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the image store needs root")
		}
		t.Skip("the image store needs root")
	}
	dir, err := os.MkdirTemp("", "berth-test-gc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	store, err := image.Open(filepath.Join(dir, "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	busybox, err := registrytest.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("berth.invalid/busybox:1")
	archive := filepath.Join(dir, "busybox.tar")
	if err := tarball.MultiRefWriteToFile(archive, map[name.Reference]v1.Image{tag: busybox}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Import(context.Background(), archive); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := &native{images: store}
	go n.gcImages(ctx, NativeOptions{ImageStoreMax: 1, ImageGCInterval: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if list, _ := store.List(); len(list) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the unused image was not evicted past ImageStoreMax")
}
