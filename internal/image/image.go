// Package image is berth's image service for the native (OCI runtime)
// path: it pulls images from OCI / Docker v2 registries into a layered
// store on disk, unpacks each layer once into a snapshot directory, and
// mounts overlayfs root filesystems for workloads (rootfs.Provider).
//
// Store layout under the directory given to Open:
//
//	blobs/sha256/<hex>     manifests, configs and compressed layers, by digest
//	snapshots/<hex>/fs     one unpacked layer per diffID (an overlayfs lower dir)
//	containers/<id>/       upper, work, rootfs (mount point), meta.json
//	index.json             images: ref → manifest digest, config, layers, last use
//	tmp/                   in-flight downloads and unpacks, wiped at Open
//
// Nothing is visible under blobs/ or snapshots/ before it is complete,
// verified and fsynced; see docs/images.md.
package image

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/rootfs"
)

// Options configure a Service.
type Options struct {
	// Transport is the HTTP transport for registry traffic; nil means
	// http.DefaultTransport. Tests pass a counting or failing transport.
	Transport http.RoundTripper
	// InsecureRegistries are registry hosts (host or host:port) spoken to
	// over plain HTTP. 127.0.0.1, ::1 and localhost always are.
	InsecureRegistries []string
	// DefaultAuth is used for pulls Prepare triggers for a missing image.
	DefaultAuth Auth
	// Platform is the default os/arch[/variant] chosen from multi-arch
	// images; empty means linux/<runtime.GOARCH>.
	Platform string
	// Concurrency bounds parallel layer downloads per pull; 0 means 3.
	Concurrency int
}

// Layer is one layer of a stored image.
type Layer struct {
	// Digest is the digest of the compressed blob as the registry serves it.
	Digest string `json:"digest"`
	// DiffID is the digest of the uncompressed tar; it names the snapshot.
	DiffID string `json:"diffID"`
	// MediaType is the layer's media type.
	MediaType string `json:"mediaType,omitempty"`
	// Size is the compressed size in bytes.
	Size int64 `json:"size"`
	// UnpackedSize is the sum of the regular files' sizes in the snapshot.
	UnpackedSize int64 `json:"unpackedSize"`
}

// Image describes a stored image.
type Image struct {
	// Names are the references that point at this image
	// (e.g. 127.0.0.1:5000/busybox:latest), sorted.
	Names []string `json:"names"`
	// Digest is the manifest digest (sha256:…).
	Digest string `json:"digest"`
	// ConfigDigest is the digest of the image configuration blob.
	ConfigDigest string `json:"configDigest"`
	// Platform is os/arch[/variant] of the image.
	Platform string `json:"platform,omitempty"`
	// Config is what a driver needs to run the image.
	Config rootfs.ImageConfig `json:"config"`
	// Layers are bottom first, as in the manifest.
	Layers []Layer `json:"layers"`
	// Size is the sum of the compressed layer sizes.
	Size int64 `json:"size"`
	// LastUsed is the last pull or Prepare of the image.
	LastUsed time.Time `json:"lastUsed"`
}

// Service is an image store. It is safe for concurrent use; only one
// Service (one process) may have a given directory open at a time.
type Service struct {
	dir  string
	opts Options
	lock *os.File

	// gcMu is held shared by everything that adds data or references
	// (pull, import, prepare) and exclusively by GC and Remove.
	gcMu sync.RWMutex
	// mu guards idx and containers.
	mu         sync.Mutex
	idx        *index
	containers map[string]containerMeta
	keys       keyedMutex

	// layerReaderHook, when set (tests), wraps each layer's uncompressed
	// stream before it is unpacked.
	layerReaderHook func(diffID string, r io.Reader) io.Reader
	now             func() time.Time
}

var _ rootfs.Provider = (*Service)(nil)

// ErrNotFound is returned (wrapped) when a reference is not in the store.
var ErrNotFound = errors.New("image not found in the local store")

// ErrInUse is returned (wrapped) by Remove for an image a workload's root
// filesystem is made from.
var ErrInUse = errors.New("image is in use")

// Open opens (creating if needed) the image store rooted at dir. It
// removes leftovers of interrupted downloads and unpacks and reloads the
// containers prepared by an earlier process.
func Open(dir string, opts Options) (*Service, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Platform == "" {
		opts.Platform = "linux/" + runtime.GOARCH
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 3
	}
	for _, d := range []string{"", "blobs/sha256", "snapshots", "containers", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", abs, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(abs, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", abs, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("image store %s is in use by another process: %w", abs, err)
	}
	s := &Service{dir: abs, opts: opts, lock: lock, now: time.Now}
	fail := func(err error) (*Service, error) {
		lock.Close()
		return nil, err
	}
	if err := s.cleanTmp(); err != nil {
		return fail(err)
	}
	if s.idx, err = loadIndex(s.indexPath()); err != nil {
		return fail(err)
	}
	if s.containers, err = s.loadContainers(); err != nil {
		return fail(err)
	}
	return s, nil
}

// Close releases the store's lock. Mounted root filesystems stay mounted
// and are picked up again by the next Open.
func (s *Service) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Dir returns the store's root directory.
func (s *Service) Dir() string { return s.dir }

func (s *Service) indexPath() string { return filepath.Join(s.dir, "index.json") }
func (s *Service) tmpDir() string    { return filepath.Join(s.dir, "tmp") }
func (s *Service) blobPath(hex string) string {
	return filepath.Join(s.dir, "blobs", "sha256", hex)
}
func (s *Service) snapshotPath(hex string) string {
	return filepath.Join(s.dir, "snapshots", hex)
}
func (s *Service) containerPath(id string) string {
	return filepath.Join(s.dir, "containers", id)
}

// cleanTmp removes everything under tmp/: partial downloads and unpacks
// of a process that died. Nothing outside tmp/ refers to them.
func (s *Service) cleanTmp() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("image store %s: %w", s.dir, err)
	}
	stale := make([]string, 0, len(entries))
	for _, e := range entries {
		stale = append(stale, filepath.Join(s.tmpDir(), e.Name()))
	}
	// Temp files of writeFileAtomic (index.json, containers' meta.json).
	for _, pattern := range []string{".tmp-*", "containers/*/.tmp-*"} {
		m, _ := filepath.Glob(filepath.Join(s.dir, pattern))
		stale = append(stale, m...)
	}
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("image store %s: remove stale %s: %w", s.dir, p, err)
		}
	}
	return nil
}

// keyedMutex serialises work on one key (a digest, a container id) while
// letting different keys proceed in parallel.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
