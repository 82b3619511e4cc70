package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// A snapshot is snapshots/<diffID hex>/ with fs/ (the unpacked layer, an
// overlayfs lower dir) and info.json. It is built under tmp/ and renamed
// into place only when complete and synced, so its existence means it is
// whole.

type snapshotInfo struct {
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

func (s *Service) snapshotFS(diffHex string) string {
	return filepath.Join(s.snapshotPath(diffHex), "fs")
}

// ensureSnapshot unpacks layer l from its stored blob unless its snapshot
// exists, and returns the unpacked size.
func (s *Service) ensureSnapshot(ctx context.Context, l Layer, what string) (int64, error) {
	dh, err := hexOf(l.DiffID)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	unlock := s.keys.lock("snap/" + dh)
	defer unlock()
	if b, err := os.ReadFile(filepath.Join(s.snapshotPath(dh), "info.json")); err == nil {
		var info snapshotInfo
		if json.Unmarshal(b, &info) == nil {
			return info.Size, nil
		}
	}
	// Not there, or not ours: (re)build it.
	if err := os.RemoveAll(s.snapshotPath(dh)); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	bh, err := hexOf(l.Digest)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	blob, err := os.Open(s.blobPath(bh))
	if err != nil {
		return 0, fmt.Errorf("%s: blob missing from the store: %w", what, err)
	}
	defer blob.Close()

	tmp, err := os.MkdirTemp(s.tmpDir(), "snap-"+dh[:12]+"-*")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}

	plain, err := decompress(blob)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	defer plain.Close()
	h := sha256.New()
	var r io.Reader = io.TeeReader(plain, h)
	if s.layerReaderHook != nil {
		r = s.layerReaderHook(l.DiffID, r)
	}
	size, err := unpackTar(ctx, r, filepath.Join(tmp, "fs"))
	if err != nil {
		return 0, fmt.Errorf("%s: unpack: %w", what, err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // tar padding, for the hash
		return 0, fmt.Errorf("%s: unpack: %w", what, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID {
		return 0, &DigestMismatchError{What: what + " (uncompressed, diffID)", Want: l.DiffID, Got: got}
	}
	info, _ := json.Marshal(snapshotInfo{DiffID: l.DiffID, Size: size})
	if err := os.WriteFile(filepath.Join(tmp, "info.json"), info, 0o600); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if err := syncFS(tmp); err != nil {
		return 0, fmt.Errorf("%s: sync snapshot: %w", what, err)
	}
	if err := os.Rename(tmp, s.snapshotPath(dh)); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	done = true
	if err := syncDir(filepath.Join(s.dir, "snapshots")); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return size, nil
}

// syncFS flushes the filesystem holding dir: one syncfs(2) instead of an
// fsync per unpacked file.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// decompress detects gzip, zstd or an uncompressed tar by magic number.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}
