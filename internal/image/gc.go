package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// List returns the stored images, ordered by their first name.
func (s *Service) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.idx.Images))
	for _, rec := range s.idx.Images {
		out = append(out, s.image(rec))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if len(a.Names) > 0 && len(b.Names) > 0 && a.Names[0] != b.Names[0] {
			return a.Names[0] < b.Names[0]
		}
		if (len(a.Names) > 0) != (len(b.Names) > 0) {
			return len(a.Names) > 0
		}
		return a.Digest < b.Digest
	})
	return out, nil
}

// Get returns the stored image ref names (by name, or name@digest).
func (s *Service) Get(ref string) (Image, error) {
	key, err := s.normalize(ref)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookup(key)
	if rec == nil {
		return Image{}, fmt.Errorf("image %s: %w", key, ErrNotFound)
	}
	return s.image(rec), nil
}

// Remove deletes ref from the store: a name, or with name@digest the
// image and all its names. The image's data is deleted when no other
// image shares it. An image a prepared workload uses is refused.
func (s *Service) Remove(ref string) error {
	key, err := s.normalize(ref)
	if err != nil {
		return err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	rec := s.lookup(key)
	if rec == nil {
		s.mu.Unlock()
		return fmt.Errorf("remove %s: %w", key, ErrNotFound)
	}
	if users := s.usersOf(rec.Digest); len(users) > 0 {
		s.mu.Unlock()
		return fmt.Errorf("remove %s: %w by workload(s) %s; remove them first", key, ErrInUse, strings.Join(users, ", "))
	}
	if _, named := s.idx.Names[key]; named {
		delete(s.idx.Names, key)
	} else {
		s.dropNames(rec.Digest)
	}
	if !s.named(rec.Digest) {
		delete(s.idx.Images, rec.Digest)
	}
	err = s.saveIndex()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	if _, err := s.sweep(); err != nil {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	return nil
}

// named reports whether any name points at digest. Callers hold s.mu.
func (s *Service) named(digest string) bool {
	for _, d := range s.idx.Names {
		if d == digest {
			return true
		}
	}
	return false
}

// dropNames removes every name of digest. Callers hold s.mu.
func (s *Service) dropNames(digest string) {
	for n, d := range s.idx.Names {
		if d == digest {
			delete(s.idx.Names, n)
		}
	}
}

// GCResult says what GC freed.
type GCResult struct {
	// FreedBytes counts blob bytes and unpacked file bytes deleted.
	FreedBytes int64
	// Blobs and Snapshots are how many of each were deleted.
	Blobs, Snapshots int
	// Evicted are the digests of the images evicted to meet maxBytes.
	Evicted []string
}

// GC forgets images without a name that no workload uses, then deletes
// blobs and snapshots no stored image references. Then, if
// maxBytes > 0 and the store still holds more than maxBytes (see
// DiskUsage), it evicts the least recently used images no prepared
// workload uses until it fits or only images in use are left.
func (s *Service) GC(ctx context.Context, maxBytes int64) (GCResult, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if err := s.dropUnnamed(); err != nil {
		return GCResult{}, err
	}
	res, err := s.sweep()
	if err != nil || maxBytes <= 0 {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	sizes, err := s.itemSizes()
	if err != nil {
		return res, err
	}
	s.mu.Lock()
	inUse := map[string]bool{}
	for _, m := range s.containers {
		inUse[m.Digest] = true
	}
	var images []lruImage
	for _, rec := range s.idx.Images {
		images = append(images, lruImage{Digest: rec.Digest, LastUsed: rec.LastUsed, InUse: inUse[rec.Digest], Items: recordItems(rec)})
	}
	evict := chooseEvictions(images, sizes, maxBytes)
	for _, d := range evict {
		s.dropNames(d)
		delete(s.idx.Images, d)
	}
	if len(evict) > 0 {
		err = s.saveIndex()
	}
	s.mu.Unlock()
	if err != nil {
		return res, err
	}
	more, err := s.sweep()
	res.FreedBytes += more.FreedBytes
	res.Blobs += more.Blobs
	res.Snapshots += more.Snapshots
	res.Evicted = evict
	return res, err
}

// dropUnnamed forgets images that lost all their names (a tag moved
// while a workload used the old image) and are no longer in use.
func (s *Service) dropUnnamed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for d := range s.idx.Images {
		if !s.named(d) && len(s.usersOf(d)) == 0 {
			delete(s.idx.Images, d)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return s.saveIndex()
}

// DiskUsage returns the bytes GC accounts for: all blobs plus the
// unpacked files of all snapshots (filesystem overhead not included).
func (s *Service) DiskUsage() (int64, error) {
	sizes, err := s.itemSizes()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, v := range sizes {
		n += v
	}
	return n, nil
}

// recordItems names the store items an image needs: "blob/<hex>" and
// "snap/<hex>".
func recordItems(rec *imageRecord) []string {
	items := []string{"blob/" + strings.TrimPrefix(rec.Digest, "sha256:"), "blob/" + strings.TrimPrefix(rec.ConfigDigest, "sha256:")}
	for _, l := range rec.Layers {
		items = append(items, "blob/"+strings.TrimPrefix(l.Digest, "sha256:"), "snap/"+strings.TrimPrefix(l.DiffID, "sha256:"))
	}
	return items
}

// itemSizes returns the size of every blob and snapshot on disk.
func (s *Service) itemSizes() (map[string]int64, error) {
	sizes := map[string]int64{}
	blobs, err := os.ReadDir(s.blobPath(""))
	if err != nil {
		return nil, err
	}
	for _, e := range blobs {
		if info, err := e.Info(); err == nil {
			sizes["blob/"+e.Name()] = info.Size()
		}
	}
	snaps, err := os.ReadDir(filepath.Join(s.dir, "snapshots"))
	if err != nil {
		return nil, err
	}
	for _, e := range snaps {
		var info snapshotInfo
		b, err := os.ReadFile(filepath.Join(s.snapshotPath(e.Name()), "info.json"))
		if err == nil && json.Unmarshal(b, &info) == nil {
			sizes["snap/"+e.Name()] = info.Size
		} else {
			sizes["snap/"+e.Name()] = duFiles(s.snapshotPath(e.Name()))
		}
	}
	return sizes, nil
}

// sweep deletes blobs and snapshots no image references. Callers hold
// s.gcMu exclusively, so no pull is adding data meanwhile.
func (s *Service) sweep() (GCResult, error) {
	var res GCResult
	keep := map[string]bool{}
	s.mu.Lock()
	for _, rec := range s.idx.Images {
		for _, it := range recordItems(rec) {
			keep[it] = true
		}
	}
	s.mu.Unlock()
	sizes, err := s.itemSizes()
	if err != nil {
		return res, err
	}
	var errs []error
	for item, size := range sizes {
		if keep[item] {
			continue
		}
		kind, hx, _ := strings.Cut(item, "/")
		p := s.blobPath(hx)
		if kind == "snap" {
			p = s.snapshotPath(hx)
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		res.FreedBytes += size
		if kind == "snap" {
			res.Snapshots++
		} else {
			res.Blobs++
		}
	}
	return res, errors.Join(errs...)
}

// duFiles sums the sizes of regular files under dir.
func duFiles(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// lruImage is an image as eviction sees it.
type lruImage struct {
	Digest   string
	LastUsed time.Time
	InUse    bool
	// Items are the store items (see recordItems) the image needs.
	Items []string
}

// chooseEvictions returns the digests of images to evict, least recently
// used first, until the items still needed fit in maxBytes. sizes holds
// every item in the store. Images in use are never chosen; an item shared
// with an image that stays is not counted as freed.
func chooseEvictions(images []lruImage, sizes map[string]int64, maxBytes int64) []string {
	var total int64
	for _, v := range sizes {
		total += v
	}
	refs := map[string]int{}
	for _, im := range images {
		for _, it := range uniq(im.Items) {
			refs[it]++
		}
	}
	cands := make([]lruImage, 0, len(images))
	for _, im := range images {
		if !im.InUse {
			cands = append(cands, im)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].LastUsed.Equal(cands[j].LastUsed) {
			return cands[i].LastUsed.Before(cands[j].LastUsed)
		}
		return cands[i].Digest < cands[j].Digest
	})
	var out []string
	for _, im := range cands {
		if total <= maxBytes {
			break
		}
		for _, it := range uniq(im.Items) {
			refs[it]--
			if refs[it] == 0 {
				total -= sizes[it]
			}
		}
		out = append(out, im.Digest)
	}
	return out
}

func uniq(items []string) []string {
	seen := make(map[string]bool, len(items))
	out := items[:0:0]
	for _, it := range items {
		if !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	return out
}
