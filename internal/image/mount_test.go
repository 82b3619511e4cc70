package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	ok, err := isMountPoint(path)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestPrepareOverlayShowsMergedLayers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Push(t, "whiteout:1", img)
	s := newService(t, Options{})

	// Not pulled yet: Prepare pulls.
	m, err := s.Prepare(bg(), ref, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "web-1") })
	if m.Path != filepath.Join(s.Dir(), "containers", "web-1", "rootfs") || !mounted(t, m.Path) {
		t.Fatalf("rootfs %s not mounted", m.Path)
	}
	if !slices.Equal(m.Config.Cmd, []string{"sh"}) || !strings.HasPrefix(strings.Join(m.Config.Env, ","), "PATH=") {
		t.Errorf("config %+v", m.Config)
	}
	root := m.Path
	if got := mustRead(t, filepath.Join(root, registrytest.UpperFile)); got != registrytest.UpperContent {
		t.Errorf("upper file = %q", got)
	}
	if got := mustRead(t, filepath.Join(root, registrytest.WhiteoutKept)); got != "kept\n" {
		t.Errorf("kept = %q", got)
	}
	if got := mustRead(t, filepath.Join(root, registrytest.WhiteoutHardlink)); got != "kept\n" {
		t.Errorf("hard link = %q", got)
	}
	if got := mustRead(t, filepath.Join(root, registrytest.WhiteoutSymlink)); got != "kept\n" {
		t.Errorf("symlink = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(root, registrytest.WhiteoutDeleted)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whiteout-deleted file visible: %v", err)
	}
	if names := dirNames(t, filepath.Join(root, registrytest.OpaqueDir)); !slices.Equal(names, []string{"new.txt"}) {
		t.Errorf("opaque dir holds %v, want [new.txt]", names)
	}
	if _, err := os.Lstat(filepath.Join(root, "bin", "busybox")); err != nil {
		t.Errorf("base layer missing: %v", err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin", "sh")); l != "busybox" {
		t.Errorf("bin/sh -> %q", l)
	}

	// Writes go to the upper dir, never into a snapshot.
	if err := os.WriteFile(filepath.Join(root, "data", "written.txt"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, registrytest.WhiteoutKept), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(s.containerPath("web-1"), "upper")
	if got := mustRead(t, filepath.Join(upper, "data", "written.txt")); got != "w" {
		t.Errorf("upper has %q", got)
	}
	_, diffIDs := layerDigests(t, img)
	middle := s.snapshotFS(strings.TrimPrefix(diffIDs[1], "sha256:"))
	if got := mustRead(t, filepath.Join(middle, registrytest.WhiteoutKept)); got != "kept\n" {
		t.Errorf("snapshot modified: %q", got)
	}
	for _, d := range diffIDs {
		if exists(filepath.Join(s.snapshotFS(strings.TrimPrefix(d, "sha256:")), "data", "written.txt")) {
			t.Error("write landed in a snapshot")
		}
	}

	// Idempotent, in this process and the next.
	m2, err := s.Prepare(bg(), ref, "web-1")
	if err != nil || m2.Path != m.Path {
		t.Fatalf("second Prepare: %v %v", m2.Path, err)
	}
	s.Close()
	s2, err := Open(s.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	m3, err := s2.Prepare(bg(), ref, "web-1")
	if err != nil || m3.Path != m.Path {
		t.Fatalf("Prepare after restart: %v %v", m3.Path, err)
	}
	// After a reboot the mount is gone; Prepare remounts on the same upper.
	if err := unix.Unmount(m.Path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Prepare(bg(), ref, "web-1"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(m.Path, "data", "written.txt")); got != "w" {
		t.Errorf("after remount: %q", got)
	}
	if _, err := s2.Prepare(bg(), reg.Ref("other:1"), "web-1"); err == nil {
		t.Error("Prepare of a prepared id from another image: no error")
	}

	// Release unmounts and deletes; releasing again or an unknown id is fine.
	if err := s2.Release(bg(), "web-1"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, m.Path) || exists(s2.containerPath("web-1")) {
		t.Error("Release left the mount or the directory")
	}
	if err := s2.Release(bg(), "web-1"); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if err := s2.Release(bg(), "never-prepared"); err != nil {
		t.Errorf("Release unknown: %v", err)
	}
}

func TestReleaseBusyMountDetaches(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushBusybox(t, "busybox:1")
	s := newService(t, Options{})
	m, err := s.Prepare(bg(), ref, "busy")
	if err != nil {
		t.Fatal(err)
	}
	// An open directory keeps the mount busy.
	f, err := os.Open(filepath.Join(m.Path, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Release(bg(), "busy"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, m.Path) {
		t.Error("still mounted")
	}
}

func TestRemoveRefusedWhileInUse(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushBusybox(t, "busybox:1")
	s := newService(t, Options{})
	if _, err := s.Prepare(bg(), ref, "app-1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "app-1") })
	err := s.Remove(ref)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "app-1") {
		t.Fatalf("Remove in use: %v", err)
	}
	// GC never takes it either, even over budget.
	res, err := s.GC(bg(), 1)
	if err != nil || len(res.Evicted) != 0 {
		t.Fatalf("GC evicted an image in use: %+v %v", res, err)
	}
	if _, err := s.Get(ref); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(bg(), "app-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if err := s.Remove(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if b, sn := dirNames(t, s.blobPath("")), dirNames(t, filepath.Join(s.Dir(), "snapshots")); len(b)+len(sn) != 0 {
		t.Errorf("Remove left blobs %v snapshots %v", b, sn)
	}
}

// An image with more layers than fit in mount(2)'s one-page option string.
func TestPrepareManyLayers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	const n = 60
	var layers []v1.Layer
	for i := 0; i < n; i++ {
		files := []registrytest.File{{Name: fmt.Sprintf("layers/%02d", i), Body: []byte(fmt.Sprint(i))}}
		if i == n-1 {
			files = append(files, registrytest.File{Name: "layers/.wh.00"})
		}
		l, err := registrytest.NewLayer(files...)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := registrytest.NewImage(registrytest.ImageConfig{Cmd: []string{"true"}}, layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Push(t, "many:1", img)
	s := newService(t, Options{})
	m, err := s.Prepare(bg(), ref, "many")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "many") })
	names := dirNames(t, filepath.Join(m.Path, "layers"))
	if len(names) != n-1 || names[0] != "01" || names[len(names)-1] != fmt.Sprintf("%02d", n-1) {
		t.Errorf("layers/ holds %v", names)
	}
	if err := s.Release(bg(), "many"); err != nil || mounted(t, m.Path) {
		t.Errorf("release: %v", err)
	}
}
