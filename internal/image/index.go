package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/rootfs"
)

// indexVersion is the format of index.json.
const indexVersion = 1

// index is the persisted list of images. It is rewritten whole, atomically,
// on every change; it is small (one record per image).
type index struct {
	Version int `json:"version"`
	// Images by manifest digest.
	Images map[string]*imageRecord `json:"images"`
	// Names maps a normalised reference to a manifest digest.
	Names map[string]string `json:"names"`
}

type imageRecord struct {
	Digest       string             `json:"digest"`
	ConfigDigest string             `json:"configDigest"`
	Platform     string             `json:"platform,omitempty"`
	Config       rootfs.ImageConfig `json:"config"`
	Layers       []Layer            `json:"layers"`
	LastUsed     time.Time          `json:"lastUsed"`
}

func loadIndex(path string) (*index, error) {
	idx := &index{Version: indexVersion, Images: map[string]*imageRecord{}, Names: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index %s: %w", path, err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("image index %s is corrupt (%v); move it away to start with an empty store", path, err)
	}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("image index %s has version %d, this berth reads version %d", path, idx.Version, indexVersion)
	}
	if idx.Images == nil {
		idx.Images = map[string]*imageRecord{}
	}
	if idx.Names == nil {
		idx.Names = map[string]string{}
	}
	return idx, nil
}

// saveIndex persists s.idx. Callers hold s.mu.
func (s *Service) saveIndex() error {
	b, err := json.MarshalIndent(s.idx, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.indexPath(), b, 0o600); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	return nil
}

// image returns the public view of rec. Callers hold s.mu.
func (s *Service) image(rec *imageRecord) Image {
	img := Image{
		Digest:       rec.Digest,
		ConfigDigest: rec.ConfigDigest,
		Platform:     rec.Platform,
		Config:       rec.Config,
		Layers:       append([]Layer(nil), rec.Layers...),
		LastUsed:     rec.LastUsed,
	}
	for n, d := range s.idx.Names {
		if d == rec.Digest {
			img.Names = append(img.Names, n)
		}
	}
	sort.Strings(img.Names)
	for _, l := range rec.Layers {
		img.Size += l.Size
	}
	return img
}

// lookup finds the record a normalised reference names: by name, or by
// digest for name@sha256:… references. Callers hold s.mu.
func (s *Service) lookup(ref string) *imageRecord {
	if d, ok := s.idx.Names[ref]; ok {
		return s.idx.Images[d]
	}
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return s.idx.Images[ref[i+1:]]
	}
	return nil
}

// containerMeta is containers/<id>/meta.json: which image a prepared
// root filesystem was made from. It is what keeps the image in use.
type containerMeta struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

func (s *Service) loadContainers() (map[string]containerMeta, error) {
	out := map[string]containerMeta{}
	entries, err := os.ReadDir(filepath.Join(s.dir, "containers"))
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.dir, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.containerPath(e.Name()), "meta.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue // Prepare died before recording it; Prepare or Release finishes it
		}
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", e.Name(), err)
		}
		var m containerMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("container %s: corrupt meta.json: %w", e.Name(), err)
		}
		out[e.Name()] = m
	}
	return out, nil
}

// Users returns the workloads whose root filesystem is made from the
// image with manifest digest, sorted.
func (s *Service) Users(digest string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usersOf(digest)
}

// usersOf is Users for callers that hold s.mu.
func (s *Service) usersOf(digest string) []string {
	var ids []string
	for id, m := range s.containers {
		if m.Digest == digest {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// writeFileAtomic writes data to path so that a crash leaves either the
// old or the new content: temp file in the same directory, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory so a rename into it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
