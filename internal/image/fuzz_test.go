package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnpackTar feeds arbitrary layer tars to the unpacker: it must never
// panic and never create anything outside the snapshot directory,
// whatever names, links and whiteouts the tar holds.
func FuzzUnpackTar(f *testing.F) {
	requireRoot(f)
	seed := func(entries ...tarEntry) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			typ := e.typ
			if typ == 0 {
				typ = tar.TypeReg
			}
			_ = tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link})
			_, _ = tw.Write([]byte(e.body))
		}
		_ = tw.Close()
		f.Add(buf.Bytes())
	}
	seed(tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"})
	seed(tarEntry{name: "a/.wh.b"}, tarEntry{name: "c/.wh..wh..opq"})
	seed(tarEntry{name: "l", typ: tar.TypeSymlink, link: "/"}, tarEntry{name: "l/x", body: "x"})
	seed(tarEntry{name: "h", typ: tar.TypeLink, link: "../x"})
	seed(tarEntry{name: "../../x", body: "x"})
	parent := tempDir(f, "fuzz-unpack")
	defer func(old int64) { maxLayerBytes = old }(maxLayerBytes)
	maxLayerBytes = 1 << 20 // a sparse entry must not write gigabytes of zeros
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(parent, "case-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		root := filepath.Join(dir, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _ = unpackTar(context.Background(), bytes.NewReader(data), root)
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("unpack created %d entries beside the snapshot dir", len(ents)-1)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("unpack created entries outside its case dir: %d", len(ents))
		}
	})
}
