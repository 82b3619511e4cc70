package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationRefName    = "org.opencontainers.image.ref.name"
	annotationContainerd = "io.containerd.image.name"
)

// Import loads images from path: a `docker save` tarball (manifest.json
// with RepoTags), an OCI image layout directory, or a tar of one. Images
// are stored under their tags; an OCI image whose ref.name annotation is
// only a tag ("v1") is named import/<file name without extension>:<tag>,
// and one without any name import/<file name>@<digest>. For multi-arch
// indexes the Options.Platform image is imported.
func (s *Service) Import(ctx context.Context, path string) ([]Image, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if fi.IsDir() {
		return s.importLayout(ctx, path, path)
	}
	entries, err := tarNames(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	switch {
	case entries["manifest.json"]:
		return s.importDockerSave(ctx, path)
	case entries["oci-layout"] && entries["index.json"]:
		dir, err := os.MkdirTemp(s.tmpDir(), "import-*")
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		defer os.RemoveAll(dir)
		if err := extractPlain(path, dir); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		return s.importLayout(ctx, dir, path)
	}
	return nil, fmt.Errorf("import %s: neither a docker save tarball (no manifest.json) nor an OCI layout (no oci-layout and index.json)", path)
}

func (s *Service) importDockerSave(ctx context.Context, path string) ([]Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var out []Image
	for i, d := range m {
		var tag *name.Tag
		var names []string
		for _, t := range d.RepoTags {
			nt, err := name.NewTag(t)
			if err != nil {
				return nil, fmt.Errorf("import %s: tag %q: %w", path, t, err)
			}
			if tag == nil {
				tag = &nt
			}
			names = append(names, nt.Name())
		}
		var img v1.Image
		if tag != nil {
			img, err = tarball.Image(opener, tag)
		} else if len(m) == 1 {
			img, err = tarball.Image(opener, nil)
		} else {
			return nil, fmt.Errorf("import %s: image %d has no RepoTags and is not the only one", path, i)
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		if len(names) == 0 {
			dg, err := img.Digest()
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", path, err)
			}
			names = []string{"import/" + baseName(path) + "@" + dg.String()}
		}
		im, err := s.store(ctx, img, storeRequest{ref: names[0], names: names})
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		out = append(out, im)
	}
	return out, nil
}

func (s *Service) importLayout(ctx context.Context, dir, source string) ([]Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", source, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", source, err)
	}
	want, err := v1.ParsePlatform(s.opts.Platform)
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			img, err = platformFromIndex(idx, d.Digest, *want)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: %s: %w", source, d.Digest, err)
		}
		ref := layoutName(d.Annotations, source, d.Digest.String())
		n, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("import %s: image name %q: %w", source, ref, err)
		}
		got, err := s.store(ctx, img, storeRequest{ref: n.Name(), names: []string{n.Name()}})
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", source, err)
		}
		out = append(out, got)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("import %s: the layout's index lists no images", source)
	}
	return out, nil
}

// platformFromIndex picks want from a nested index of an OCI layout.
func platformFromIndex(parent v1.ImageIndex, digest v1.Hash, want v1.Platform) (v1.Image, error) {
	child, err := parent.ImageIndex(digest)
	if err != nil {
		return nil, err
	}
	im, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	var available []string
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(want) {
			return child.Image(m.Digest)
		}
		if m.Platform != nil {
			available = append(available, m.Platform.String())
		}
	}
	return nil, fmt.Errorf("no image for platform %s; available: %s", want, strings.Join(available, ", "))
}

// layoutName names an image of an OCI layout from its annotations.
func layoutName(ann map[string]string, source, digest string) string {
	if n := ann[annotationContainerd]; n != "" {
		return n
	}
	n := ann[annotationRefName]
	switch {
	case n == "":
		return "import/" + baseName(source) + "@" + digest
	case strings.ContainsAny(n, "/:@"):
		return n
	}
	return "import/" + baseName(source) + ":" + n
}

// baseName is path's file name without extensions, lower-cased and
// reduced to characters a repository name may hold.
func baseName(path string) string {
	b := filepath.Base(filepath.Clean(path))
	if i := strings.Index(b, "."); i > 0 {
		b = b[:i]
	}
	var sb strings.Builder
	for _, r := range strings.ToLower(b) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			sb.WriteRune(r)
		}
	}
	if sb.Len() == 0 {
		return "image"
	}
	return strings.Trim(sb.String(), "-_")
}

// tarNames lists the top-level file names of a tar.
func tarNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		out[strings.TrimPrefix(hdr.Name, "./")] = true
	}
}

// extractPlain unpacks the directories and regular files of an OCI
// layout tar into dir, refusing paths that leave it.
func extractPlain(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		p := filepath.Join(dir, rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("OCI layout tar entry %q: unexpected type %q", hdr.Name, hdr.Typeflag)
		}
	}
}
