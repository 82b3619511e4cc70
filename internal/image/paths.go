package image

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// entryPath turns a tar entry name (or a hard link's target) into a clean
// path relative to the layer root. It rejects any ".." component, so an
// entry can never address anything outside the layer; a leading "/" or
// "./" is accepted and dropped. The layer root itself is "".
func entryPath(name string) (string, error) {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("tar entry %q: path traversal (\"..\") is not allowed", name)
		}
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("tar entry %q: NUL in name", name)
	}
	p := path.Clean("/" + name)
	if p == "/" {
		return "", nil
	}
	rel := p[1:]
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("tar entry %q: not a path inside the layer", name)
	}
	return rel, nil
}

// whiteoutKind says what an OCI whiteout entry means.
type whiteoutKind int

const (
	notWhiteout whiteoutKind = iota
	// fileWhiteout (.wh.<name>) deletes <name> of lower layers; overlayfs
	// form: character device 0/0 named <name>.
	fileWhiteout
	// opaqueWhiteout (.wh..wh..opq) hides everything lower layers have in
	// its directory; overlayfs form: trusted.overlay.opaque=y on the dir.
	opaqueWhiteout
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteoutOf classifies a clean relative entry path. For fileWhiteout,
// target is the path of the deleted entry; for opaqueWhiteout, the
// directory made opaque ("" is the layer root).
func whiteoutOf(rel string) (kind whiteoutKind, target string, err error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return notWhiteout, "", nil
	}
	if base == whiteoutOpaque {
		return opaqueWhiteout, dir, nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, whiteoutPrefix) {
		return notWhiteout, "", fmt.Errorf("tar entry %q: malformed whiteout", rel)
	}
	return fileWhiteout, path.Join(dir, name), nil
}

// parents returns the ancestors of a clean relative path, outermost first
// ("a/b/c" → "a", "a/b").
func parents(rel string) []string {
	var out []string
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			out = append(out, rel[:i])
		}
	}
	return out
}
