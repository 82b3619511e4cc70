package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// DigestMismatchError is returned when content does not hash to the digest
// it was asked for under. Nothing of it is stored.
type DigestMismatchError struct {
	// What names the content, e.g. "layer sha256:… of 127.0.0.1:5000/app:1".
	What string
	// Want is the expected digest, Got the digest of the bytes received.
	Want, Got string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s: digest mismatch: expected %s, received content hashes to %s (corrupted in transit or by the registry); nothing was stored", e.What, e.Want, e.Got)
}

// hexOf validates a sha256 digest string and returns its hex part.
func hexOf(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("unsupported digest %q (only sha256 is supported)", digest)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("malformed digest %q", digest)
	}
	return h, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// blobWrite describes one blob to store.
type blobWrite struct {
	digest string // expected sha256:…
	size   int64  // expected size; -1 when unknown
	what   string // for errors: "layer sha256:… of <ref>"
	open   func() (io.ReadCloser, error)
	// progress, if set, is called with the bytes written so far.
	progress func(done int64)
}

// writeBlob stores a blob unless it is already present; it reports whether
// it was present. The content is hashed as it is written to a temp file
// and only renamed into blobs/ when the digest matches; concurrent writers
// of the same digest wait for each other instead of downloading twice.
func (s *Service) writeBlob(ctx context.Context, w blobWrite) (cached bool, err error) {
	hx, err := hexOf(w.digest)
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	unlock := s.keys.lock("blob/" + hx)
	defer unlock()
	final := s.blobPath(hx)
	if exists(final) {
		return true, nil
	}
	rc, err := w.open()
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.tmpDir(), "blob-"+hx[:12]+"-*")
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	cw := &countingWriter{progress: w.progress}
	n, copyErr := io.Copy(io.MultiWriter(f, h, cw), ctxReader{ctx, rc})
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	// A reader that verifies too (go-containerregistry's does) fails at
	// EOF on corrupt content; report our own finding, which names both
	// digests, when all bytes arrived.
	if got != w.digest && (copyErr == nil || (w.size >= 0 && n == w.size)) {
		return false, &DigestMismatchError{What: w.what, Want: w.digest, Got: got}
	}
	if copyErr != nil {
		return false, fmt.Errorf("%s: download: %w", w.what, copyErr)
	}
	if w.size >= 0 && n != w.size {
		return false, fmt.Errorf("%s: size mismatch: expected %d bytes, received %d", w.what, w.size, n)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	f = nil
	if err := os.Rename(tmp, final); err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	if err := syncDir(s.blobPath("")); err != nil {
		return false, fmt.Errorf("%s: %w", w.what, err)
	}
	return false, nil
}

// writeBlobBytes stores small in-memory content (manifests, configs).
func (s *Service) writeBlobBytes(ctx context.Context, digest, what string, data []byte) error {
	_, err := s.writeBlob(ctx, blobWrite{
		digest: digest, size: int64(len(data)), what: what,
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	})
	return err
}

// readBlob returns a stored blob's content.
func (s *Service) readBlob(digest string) ([]byte, error) {
	hx, err := hexOf(digest)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.blobPath(hx))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s is missing from the store; pull the image again", digest)
	}
	return b, err
}

// ctxReader stops a copy when its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// countingWriter counts bytes and reports them at most every 1 MiB.
type countingWriter struct {
	n, reported int64
	progress    func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.progress != nil && c.n-c.reported >= 1<<20 {
		c.reported = c.n
		c.progress(c.n)
	}
	return len(p), nil
}
