package image

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

func TestGCFreesUnreferencedAndRespectsMaxBytes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	busybox, _ := reg.PushBusybox(t, "busybox:1")
	whiteout, _ := reg.PushWhiteout(t, "whiteout:1") // shares busybox's layer
	random, _ := reg.PushRandom(t, "random:1", 4<<20, 2, 7)
	s := newService(t, Options{})
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { clock = clock.Add(time.Minute); return clock }

	// Pulled in this order, so LRU order is random, busybox, whiteout.
	var imgs []Image
	for _, ref := range []string{random, busybox, whiteout} {
		img, err := s.Pull(bg(), ref, PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}

	// Orphans: a blob and a snapshot nothing references.
	orphanBlob := s.blobPath("00000000000000000000000000000000000000000000000000000000000000aa")
	os.WriteFile(orphanBlob, make([]byte, 1000), 0o600)
	orphanSnap := filepath.Join(s.snapshotPath("00000000000000000000000000000000000000000000000000000000000000bb"), "fs")
	os.MkdirAll(orphanSnap, 0o755)
	os.WriteFile(filepath.Join(orphanSnap, "f"), make([]byte, 500), 0o600)

	before, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(bg(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 1 || res.Snapshots != 1 || res.FreedBytes != 1500 || len(res.Evicted) != 0 {
		t.Errorf("GC(0) = %+v, want the two orphans (1500 bytes)", res)
	}
	if exists(orphanBlob) || exists(orphanSnap) {
		t.Error("orphans left")
	}
	after, _ := s.DiskUsage()
	if after != before-1500 {
		t.Errorf("usage %d → %d", before, after)
	}
	if list, _ := s.List(); len(list) != 3 {
		t.Fatalf("GC(0) removed images: %v", list)
	}

	// Over budget by a little: the least recently used image goes.
	res, err = s.GC(bg(), after-1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Evicted, []string{imgs[0].Digest}) || res.FreedBytes < imgs[0].Size {
		t.Errorf("GC(after-1) = %+v, want %s (random) evicted", res, imgs[0].Digest)
	}
	if u, _ := s.DiskUsage(); u > after-1 {
		t.Errorf("usage %d still over %d", u, after-1)
	}

	// Prepare makes busybox the most recent and keeps it in use; a tiny
	// budget evicts whiteout but never the image in use.
	if _, err := s.Prepare(bg(), busybox, "keep"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "keep") })
	res, err = s.GC(bg(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Evicted, []string{imgs[2].Digest}) {
		t.Errorf("GC(1) evicted %v, want only whiteout", res.Evicted)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].Digest != imgs[1].Digest {
		t.Fatalf("left %v", list)
	}
	// The shared busybox layer survived whiteout's eviction.
	if !exists(filepath.Join(s.snapshotFS(hexMust(t, imgs[1].Layers[0].DiffID)), "bin", "busybox")) {
		t.Error("shared snapshot deleted")
	}
}

func hexMust(t *testing.T, digest string) string {
	t.Helper()
	h, err := hexOf(digest)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMovedTagLeavesNoDanglingImage(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, first := reg.PushBusybox(t, "app:1")
	s := newService(t, Options{})
	if _, err := s.Pull(bg(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(bg(), ref, "old"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "old") })
	img, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	_, second := reg.Push(t, "app:1", img)
	if _, err := s.Pull(bg(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	// The old image stays while "old" uses it, without a name.
	list, _ := s.List()
	if len(list) != 2 {
		t.Fatalf("images %v", list)
	}
	if res, err := s.GC(bg(), 0); err != nil || len(res.Evicted) != 0 {
		t.Fatalf("GC: %+v %v", res, err)
	}
	if err := s.Release(bg(), "old"); err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(bg(), 0)
	if err != nil {
		t.Fatal(err)
	}
	list, _ = s.List()
	if len(list) != 1 || list[0].Digest != second || res.Blobs == 0 {
		t.Errorf("after release and GC: %v (freed %+v); want only %s, not %s", list, res, second, first)
	}
}
