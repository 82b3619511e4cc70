package registrytest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// BusyboxPath is the static busybox Busybox copies into its image.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH of the images built here.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one tar entry of a layer built by NewLayer.
type File struct {
	// Name is the path in the image, without a leading slash.
	Name string
	// Type is a tar type flag; 0 means a regular file.
	Type byte
	// Mode is the permission bits; 0 means 0644 (0755 for directories).
	Mode int64
	Uid  int
	Gid  int
	Body []byte
	// Linkname is the target of a symlink or hard link.
	Linkname string
}

// fixedTime keeps builds reproducible: the same files give the same digest.
var fixedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// NewLayer returns a gzip-compressed layer holding files, in order. Names
// are used as given, so tests can also build whiteouts (".wh.name") and
// malicious entries.
func NewLayer(files ...File) (v1.Layer, error) {
	var tbuf bytes.Buffer
	tw := tar.NewWriter(&tbuf)
	for _, f := range files {
		hdr := &tar.Header{
			Name: f.Name, Typeflag: f.Type, Mode: f.Mode, Uid: f.Uid, Gid: f.Gid,
			Linkname: f.Linkname, ModTime: fixedTime, Format: tar.FormatPAX,
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gzipLayer(tbuf.Bytes())
}

// gzipLayer compresses a tar once and serves the compressed bytes.
func gzipLayer(tarBytes []byte) (v1.Layer, error) {
	var zbuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarBytes); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := zbuf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.DockerLayer))
}

// ImageConfig is what NewImage puts in the image configuration.
type ImageConfig struct {
	// Architecture defaults to runtime.GOARCH; OS is always linux.
	Architecture string
	Entrypoint   []string
	Cmd          []string
	// Env defaults to DefaultPath.
	Env        []string
	WorkingDir string
	User       string
}

// NewImage returns an image of layers (bottom first) with cfg.
func NewImage(cfg ImageConfig, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = cfg.Architecture
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: fixedTime}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = cfg.Env
	if cf.Config.Env == nil {
		cf.Config.Env = []string{DefaultPath}
	}
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.User = cfg.User
	return mutate.ConfigFile(img, cf)
}

// BusyboxLayer is a root filesystem made from the host's static busybox:
// /bin/busybox with a symlink per applet in /bin, /etc/passwd and
// /etc/group (root and nobody), and the usual empty directories.
func BusyboxLayer() (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w (install busybox-static)", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	files := []File{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "dev/", Type: tar.TypeDir},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "proc/", Type: tar.TypeDir},
		{Name: "root/", Type: tar.TypeDir, Mode: 0o700},
		{Name: "sys/", Type: tar.TypeDir},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "var/", Type: tar.TypeDir},
		{Name: "bin/busybox", Mode: 0o755, Body: bin},
		{Name: "etc/passwd", Body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Body: []byte("root:x:0:\nnobody:x:65534:\n")},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, File{Name: "bin/" + applet, Type: tar.TypeSymlink, Mode: 0o777, Linkname: "busybox"})
	}
	return NewLayer(files...)
}

// Busybox returns a one-layer busybox image: CMD ["sh"], PATH set.
func Busybox() (v1.Image, error) {
	l, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	return NewImage(ImageConfig{Cmd: []string{"sh"}}, l)
}

// Paths in the image Whiteout builds.
const (
	// WhiteoutKept is a file of the middle layer the top layer leaves alone.
	WhiteoutKept = "data/kept.txt"
	// WhiteoutDeleted exists in the middle layer and is deleted by a
	// whiteout (data/.wh.deleted.txt) in the top layer.
	WhiteoutDeleted = "data/deleted.txt"
	// WhiteoutHardlink is a hard link to WhiteoutKept, WhiteoutSymlink a
	// symlink to it (target "kept.txt").
	WhiteoutHardlink = "data/hardlink.txt"
	WhiteoutSymlink  = "data/symlink.txt"
	// OpaqueDir is replaced in the top layer (opaque whiteout): it holds
	// only OpaqueNew; OpaqueOld and OpaqueOldSub are hidden.
	OpaqueDir    = "opaque"
	OpaqueNew    = "opaque/new.txt"
	OpaqueOld    = "opaque/old.txt"
	OpaqueOldSub = "opaque/sub/old.txt"
	// UpperFile is added by the top layer; its content is UpperContent.
	UpperFile    = "data/upper.txt"
	UpperContent = "from the upper layer\n"
)

// Whiteout returns a three-layer image: busybox, a middle layer of files
// under data/ and opaque/, and a top layer that deletes WhiteoutDeleted,
// makes OpaqueDir opaque with only OpaqueNew in it, and adds UpperFile.
func Whiteout() (v1.Image, error) {
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	middle, err := NewLayer(
		File{Name: "data/", Type: tar.TypeDir},
		File{Name: WhiteoutKept, Body: []byte("kept\n")},
		File{Name: WhiteoutDeleted, Body: []byte("deleted\n")},
		File{Name: WhiteoutHardlink, Type: tar.TypeLink, Linkname: WhiteoutKept},
		File{Name: WhiteoutSymlink, Type: tar.TypeSymlink, Linkname: "kept.txt", Mode: 0o777},
		File{Name: OpaqueDir + "/", Type: tar.TypeDir},
		File{Name: OpaqueOld, Body: []byte("old\n")},
		File{Name: "opaque/sub/", Type: tar.TypeDir},
		File{Name: OpaqueOldSub, Body: []byte("old\n")},
	)
	if err != nil {
		return nil, err
	}
	top, err := NewLayer(
		File{Name: "data/", Type: tar.TypeDir},
		File{Name: "data/.wh.deleted.txt"},
		File{Name: UpperFile, Body: []byte(UpperContent)},
		File{Name: OpaqueDir + "/", Type: tar.TypeDir},
		File{Name: OpaqueDir + "/.wh..wh..opq"},
		File{Name: OpaqueNew, Body: []byte("new\n")},
	)
	if err != nil {
		return nil, err
	}
	return NewImage(ImageConfig{Cmd: []string{"sh"}}, base, middle, top)
}

// ArchFile is the file whose content (the architecture name, no newline)
// tells the images of MultiArch apart.
const ArchFile = "etc/berth-arch"

// MultiArch returns an index of linux/amd64 and linux/arm64 images that
// differ in ArchFile; the one for the host's architecture also has
// busybox.
func MultiArch() (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, arch := range []string{"amd64", "arm64"} {
		layers := []v1.Layer{}
		if arch == runtime.GOARCH {
			bb, err := BusyboxLayer()
			if err != nil {
				return nil, err
			}
			layers = append(layers, bb)
		}
		l, err := NewLayer(File{Name: "etc/", Type: tar.TypeDir}, File{Name: ArchFile, Body: []byte(arch)})
		if err != nil {
			return nil, err
		}
		img, err := NewImage(ImageConfig{Architecture: arch, Cmd: []string{"sh"}}, append(layers, l)...)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

// LargeSize is the default total size of Random images (~100 MB).
const LargeSize = 100 << 20

// Random returns an image of n layers of incompressible random data,
// total bytes in all (one file per layer), reproducible from seed.
func Random(total int64, n int, seed uint64) (v1.Image, error) {
	if n < 1 {
		n = 1
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	var layers []v1.Layer
	for i := 0; i < n; i++ {
		size := total / int64(n)
		if i == n-1 {
			size = total - size*int64(n-1)
		}
		body := make([]byte, size)
		for j := 0; j+8 <= len(body); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				body[j+k] = byte(v >> (8 * k))
			}
		}
		l, err := NewLayer(File{Name: "data/", Type: tar.TypeDir}, File{Name: fmt.Sprintf("data/random-%d.bin", i), Body: body})
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return NewImage(ImageConfig{Cmd: []string{"/bin/true"}}, layers...)
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := 0; i < 8; i++ {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// PushBusybox builds Busybox and pushes it as repoTag; it skips (fails
// with CI=true) when busybox-static is missing.
func (r *Registry) PushBusybox(tb testing.TB, repoTag string) (ref, digest string) {
	tb.Helper()
	Require(tb, BusyboxPath, "busybox-static")
	img, err := Busybox()
	if err != nil {
		tb.Fatal(err)
	}
	return r.Push(tb, repoTag, img)
}

// PushWhiteout builds Whiteout and pushes it as repoTag.
func (r *Registry) PushWhiteout(tb testing.TB, repoTag string) (ref, digest string) {
	tb.Helper()
	Require(tb, BusyboxPath, "busybox-static")
	img, err := Whiteout()
	if err != nil {
		tb.Fatal(err)
	}
	return r.Push(tb, repoTag, img)
}

// PushMultiArch builds MultiArch and pushes it as repoTag.
func (r *Registry) PushMultiArch(tb testing.TB, repoTag string) (ref, digest string) {
	tb.Helper()
	Require(tb, BusyboxPath, "busybox-static")
	idx, err := MultiArch()
	if err != nil {
		tb.Fatal(err)
	}
	return r.PushIndex(tb, repoTag, idx)
}

// PushRandom builds Random(total, layers, seed) and pushes it as repoTag.
func (r *Registry) PushRandom(tb testing.TB, repoTag string, total int64, layers int, seed uint64) (ref, digest string) {
	tb.Helper()
	img, err := Random(total, layers, seed)
	if err != nil {
		tb.Fatal(err)
	}
	return r.Push(tb, repoTag, img)
}
