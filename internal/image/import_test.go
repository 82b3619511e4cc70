package image

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

func testImages(t *testing.T) (busybox, whiteout v1.Image) {
	t.Helper()
	registrytest.Require(t, registrytest.BusyboxPath, "busybox-static")
	b, err := registrytest.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	w, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	return b, w
}

func TestImportDockerSave(t *testing.T) {
	busybox, whiteout := testImages(t)
	path := filepath.Join(tempDir(t, "import"), "images.tar")
	refs := map[name.Reference]v1.Image{}
	for ref, img := range map[string]v1.Image{
		"berth.invalid/busybox:1":      busybox,
		"berth.invalid/busybox:latest": busybox,
		"berth.invalid/whiteout:1":     whiteout,
	} {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		refs[tag] = img
	}
	if err := tarball.MultiRefWriteToFile(path, refs); err != nil {
		t.Fatal(err)
	}
	s := newService(t, Options{})
	got, err := s.Import(bg(), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("imported %d images, want 2", len(got))
	}
	list, _ := s.List()
	var names []string
	for _, img := range list {
		names = append(names, img.Names...)
	}
	slices.Sort(names)
	want := []string{"berth.invalid/busybox:1", "berth.invalid/busybox:latest", "berth.invalid/whiteout:1"}
	if !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	wd, _ := whiteout.Digest()
	if img, err := s.Get("berth.invalid/whiteout:1"); err != nil || img.Digest != wd.String() {
		t.Errorf("whiteout: %v %v, want digest %s", img.Digest, err, wd)
	}
	// Prepare uses the imported image; berth.invalid is never contacted.
	m, err := s.Prepare(bg(), "berth.invalid/whiteout:1", "imp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(bg(), "imp") })
	if got := mustRead(t, filepath.Join(m.Path, registrytest.UpperFile)); got != registrytest.UpperContent {
		t.Errorf("upper file %q", got)
	}
	if exists(filepath.Join(m.Path, registrytest.WhiteoutDeleted)) {
		t.Error("whiteout-deleted file visible")
	}
}

func TestImportOCILayout(t *testing.T) {
	busybox, whiteout := testImages(t)
	dir := filepath.Join(tempDir(t, "import"), "myapp")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(busybox, layout.WithAnnotations(map[string]string{annotationRefName: "v2"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(whiteout, layout.WithAnnotations(map[string]string{annotationRefName: "berth.invalid/full/name:3"})); err != nil {
		t.Fatal(err)
	}

	t.Run("directory", func(t *testing.T) {
		s := newService(t, Options{})
		got, err := s.Import(bg(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("imported %d", len(got))
		}
		for _, ref := range []string{"import/myapp:v2", "berth.invalid/full/name:3"} {
			if _, err := s.Get(ref); err != nil {
				t.Errorf("%s: %v", ref, err)
			}
		}
	})
	t.Run("tar", func(t *testing.T) {
		tarPath := filepath.Join(tempDir(t, "import"), "myapp.oci.tar")
		tarDir(t, dir, tarPath)
		s := newService(t, Options{})
		if _, err := s.Import(bg(), tarPath); err != nil {
			t.Fatal(err)
		}
		img, err := s.Get("import/myapp:v2")
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Prepare(bg(), "import/myapp:v2", "oci")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Release(bg(), "oci") })
		if !exists(filepath.Join(m.Path, "bin", "busybox")) || len(img.Layers) != 1 {
			t.Error("imported busybox incomplete")
		}
		if names := dirNames(t, s.tmpDir()); len(names) != 0 {
			t.Errorf("temp left: %v", names)
		}
	})
	t.Run("not an image", func(t *testing.T) {
		bogus := filepath.Join(tempDir(t, "import"), "bogus.tar")
		os.WriteFile(bogus, []byte("definitely not a tar"), 0o600)
		s := newService(t, Options{})
		if _, err := s.Import(bg(), bogus); err == nil || !strings.Contains(err.Error(), bogus) {
			t.Errorf("bogus import: %v", err)
		}
	})
}

// tarDir writes the regular files and directories under dir to a tar.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		hdr, _ := tar.FileInfoHeader(info, "")
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
