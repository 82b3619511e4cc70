package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// unpacker writes one layer's tar stream into a fresh directory, in the
// form overlayfs reads as a lower layer. It never follows a symlink: every
// path it writes to has only directories it created itself as ancestors.
type unpacker struct {
	root string
	// kinds records every path created so far: true for directories.
	kinds map[string]bool
	dirs  []dirTimes
	// size is the sum of regular files' sizes.
	size int64
	// limit bounds size: the free space of the snapshot's filesystem
	// (less a reserve) or maxLayerBytes, whichever is smaller.
	limit int64
}

// maxLayerBytes bounds what one layer may unpack to, whatever the free
// space; tests lower it.
var maxLayerBytes int64 = 1 << 40

// freeSpaceReserve is left free on the snapshot filesystem by unpacking.
const freeSpaceReserve = 64 << 20

// unpackLimit is how many bytes of files a layer may write below root.
func unpackLimit(root string) int64 {
	limit := maxLayerBytes
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err == nil {
		if free := int64(st.Bavail)*int64(st.Bsize) - freeSpaceReserve; free < limit {
			limit = max(free, 0)
		}
	}
	return limit
}

type dirTimes struct {
	path         string
	atime, mtime time.Time
}

// unpackTar extracts tar stream r into the existing, empty directory root.
func unpackTar(ctx context.Context, r io.Reader, root string) (int64, error) {
	u := &unpacker{root: root, kinds: map[string]bool{"": true}, limit: unpackLimit(root)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(ctx, hdr, tr); err != nil {
			return 0, err
		}
	}
	// Directory times last: creating children changed them.
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		_ = setTimes(d.path, d.atime, d.mtime)
	}
	return u.size, nil
}

func (u *unpacker) abs(rel string) string { return filepath.Join(u.root, rel) }

// ensureParents creates missing ancestors of rel as directories and
// refuses to write below anything that is not a directory (a symlink in
// particular).
func (u *unpacker) ensureParents(rel, name string) error {
	for _, p := range parents(rel) {
		isDir, ok := u.kinds[p]
		if ok && !isDir {
			return fmt.Errorf("tar entry %q: parent %q is not a directory (refusing to write through a symlink or file)", name, p)
		}
		if !ok {
			if err := os.Mkdir(u.abs(p), 0o755); err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
			u.kinds[p] = true
		}
	}
	return nil
}

// clear removes an earlier entry at rel (a later entry of the same path
// replaces it), except that a directory replacing a directory is kept.
func (u *unpacker) clear(rel string, dir bool) error {
	isDir, ok := u.kinds[rel]
	if !ok || (isDir && dir) {
		return nil
	}
	delete(u.kinds, rel)
	if isDir {
		prefix := rel + "/"
		for k := range u.kinds {
			if strings.HasPrefix(k, prefix) {
				delete(u.kinds, k)
			}
		}
	}
	return os.RemoveAll(u.abs(rel))
}

func (u *unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	rel, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil // the layer root; its metadata is the lower layers' business
	}
	kind, target, err := whiteoutOf(rel)
	if err != nil {
		return err
	}
	switch kind {
	case opaqueWhiteout:
		if err := u.ensureParents(path.Join(target, whiteoutOpaque), hdr.Name); err != nil {
			return err
		}
		if err := unix.Lsetxattr(u.abs(target), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("tar entry %q: mark %q opaque: %w", hdr.Name, target, err)
		}
		return nil
	case fileWhiteout:
		if err := u.ensureParents(target, hdr.Name); err != nil {
			return err
		}
		if err := u.clear(target, false); err != nil {
			return err
		}
		if err := unix.Mknod(u.abs(target), unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("tar entry %q: whiteout device for %q: %w", hdr.Name, target, err)
		}
		u.kinds[target] = false
		return nil
	}

	if err := u.ensureParents(rel, hdr.Name); err != nil {
		return err
	}
	isDir := hdr.Typeflag == tar.TypeDir
	if err := u.clear(rel, isDir); err != nil {
		return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
	}
	p := u.abs(rel)
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if _, ok := u.kinds[rel]; !ok {
			if err := os.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		}
		u.dirs = append(u.dirs, dirTimes{p, hdr.AccessTime, hdr.ModTime})
	case tar.TypeReg, tar.TypeRegA:
		// A sparse entry's holes come out as zeros: its declared size is
		// what it writes. Refuse before writing what cannot fit.
		if hdr.Size < 0 || hdr.Size > u.limit-u.size {
			return fmt.Errorf("tar entry %q: %d bytes would exceed the space left for this layer (%d bytes; disk nearly full or the layer is malformed)",
				hdr.Name, hdr.Size, max(u.limit-u.size, 0))
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		n, err := io.Copy(f, ctxReader{ctx, r})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		u.size += n
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, p); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		target, err := entryPath(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", hdr.Name, err)
		}
		if isDir, ok := u.kinds[target]; !ok || isDir || target == "" {
			return fmt.Errorf("tar entry %q: hard link target %q is not a file earlier in the same layer", hdr.Name, hdr.Linkname)
		}
		if err := os.Link(u.abs(target), p); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		u.kinds[rel] = false
		return nil // a hard link shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		t := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(p, t|mode, int(dev)); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("tar entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
	}
	u.kinds[rel] = isDir
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("tar entry %q: chown: %w", hdr.Name, err)
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("tar entry %q: xattr %s: %w", hdr.Name, name, err)
			}
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid/setgid.
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			return fmt.Errorf("tar entry %q: chmod: %w", hdr.Name, err)
		}
	}
	if hdr.Typeflag != tar.TypeDir {
		_ = setTimes(p, hdr.AccessTime, hdr.ModTime)
	}
	return nil
}

// setTimes sets a path's times without following a symlink.
func setTimes(p string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
