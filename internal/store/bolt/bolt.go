// Package bolt is berth's embedded store backend on bbolt: one file, every
// transaction fsynced before it is acknowledged, a change log for
// watch-from-revision, and the store.Store contract (see storetest).
//
// Threading: Get, List and Rev are bbolt read transactions and run in
// parallel with each other and with a commit. Txns are queued to one
// committer goroutine, which applies every Txn waiting at that moment in
// one bbolt transaction (one fsync), each under its own revision and in
// queue order, then publishes their events to watchers in revision order
// before answering the callers (group commit). Watcher registration and
// event publication share one mutex, so a watch never misses or repeats a
// revision.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berth-dev/berth/internal/store"
)

var (
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
	keyFormat  = []byte("format")
)

const formatVersion = "berth-store-2"

// Defaults for Options fields left zero.
const (
	DefaultHistoryRevisions = 100000
	DefaultWatchBuffer      = 4096
	DefaultLockTimeout      = time.Second
)

// Options tune the backend. The zero value is the production default.
type Options struct {
	// HistoryRevisions is how many of the latest revisions the change log
	// keeps for Watch (default 100,000); watching from an older revision
	// yields store.ErrCompacted.
	HistoryRevisions int64
	// WatchBuffer is how many events a live watcher may lag behind before
	// it is dropped, its channel closed (default 4096).
	WatchBuffer int
	// LockTimeout is how long Open waits for another process to release
	// the file (default 1s).
	LockTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.HistoryRevisions <= 0 {
		o.HistoryRevisions = DefaultHistoryRevisions
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = DefaultWatchBuffer
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	return o
}

// Store is the bbolt backend. Create it with Open; it is safe for
// concurrent use.
type Store struct {
	db   *bbolt.DB
	opts Options
	path string

	reqs     chan *request // Txns waiting for the committer
	done     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the committer has stopped
	closed   atomic.Bool
	close    sync.Once
	closeErr error

	mu       sync.Mutex // guards the fields below; held while publishing a commit
	rev      int64      // last revision published to watchers
	watchers map[*watcher]struct{}
}

// Open opens or creates the store file at path (its directory must exist).
// A file that is corrupt, is not a berth database, cannot be read, or is
// locked by another process is an error that says so; Open never starts
// empty over a file it cannot read.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	db, rev, err := openDB(path, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db: db, opts: opts, path: path,
		reqs: make(chan *request), done: make(chan struct{}), loopDone: make(chan struct{}),
		rev: rev, watchers: map[*watcher]struct{}{},
	}
	go s.commitLoop()
	return s, nil
}

// openDB opens the bbolt file, creates or checks berth's buckets and
// returns the current revision. bbolt can panic or fault on a damaged
// file; both become a "corrupt" error.
func openDB(path string, opts Options) (db *bbolt.DB, rev int64, err error) {
	var file *os.File
	bo := &bbolt.Options{
		Timeout: opts.LockTimeout,
		// The free-page list is not written with every commit (it is
		// rebuilt by a scan on open) and is kept as a map: at a few
		// thousand commits a second the list's pages were a large part
		// of each commit's writes. Committed data is synced as before.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	// A page outside the file (a truncated file) is a memory fault in the
	// mmap; turn it into a panic we can recover from.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt's state is unknown after a panic: release the file (and
			// its lock) without trusting bbolt's Close.
			if file != nil {
				file.Close()
			}
			db, rev, err = nil, 0, corruptError(path, fmt.Errorf("%v", r))
		}
	}()
	db, err = bbolt.Open(path, 0o600, bo)
	if err != nil {
		return nil, 0, openError(path, err)
	}
	if err := checkSize(db, file); err != nil {
		db.Close()
		return nil, 0, corruptError(path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return initBuckets(tx, &rev) }); err != nil {
		db.Close()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, 0, openError(path, err)
		}
		return nil, 0, corruptError(path, err)
	}
	return db, rev, nil
}

// checkSize refuses a file shorter than the pages its metadata claims (a
// truncated copy): reading those pages would fault.
func checkSize(db *bbolt.DB, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		if need := tx.Size(); fi.Size() < need {
			return fmt.Errorf("file is %d bytes but its pages need %d (truncated?)", fi.Size(), need)
		}
		return nil
	})
}

// openError turns a bbolt.Open error into one a user can act on.
func openError(path string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("open %s: data file is in use by another berth process (stop it first, or use another --data-dir)", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("open %s: permission denied: berth must be able to read and write the data file and its directory (check owner and mode, or run as the user that owns it): %w", path, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("open %s: directory %s does not exist: %w", path, filepath.Dir(path), err)
	case errors.As(err, new(*fs.PathError)):
		return fmt.Errorf("open %s: cannot open the data file: %w", path, err)
	case errors.As(err, &errno):
		return fmt.Errorf("open %s: cannot lock or read the data file: %w", path, err)
	}
	return corruptError(path, err)
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("open %s: data file is corrupt or not a berth database: %v (restore it from a backup or move it away; berth will not start empty over it)", path, cause)
}

// initBuckets creates the buckets of a new file, checks those of an
// existing one and reads the revision counter.
func initBuckets(tx *bbolt.Tx, rev *int64) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A bbolt file with buckets but no meta is some other program's.
		var other []string
		_ = tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			other = append(other, string(name))
			return nil
		})
		if len(other) > 0 {
			return fmt.Errorf("a bbolt file without berth's metadata (buckets %q)", other)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyRev, u64(0)); err != nil {
			return err
		}
	}
	if f := meta.Get(keyFormat); string(f) != formatVersion {
		return fmt.Errorf("unknown format %q (want %q; written by another berth version?)", f, formatVersion)
	}
	r := meta.Get(keyRev)
	if len(r) != 8 {
		return errors.New("bad revision counter")
	}
	*rev = int64(binary.BigEndian.Uint64(r))
	for _, b := range [][]byte{bucketKV, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return nil
}

func u64(n int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}

func readRev(tx *bbolt.Tx) int64 {
	return int64(binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyRev)))
}

// view runs a read transaction, mapping a closed database to ErrClosed.
func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	var kv store.KV
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decodeRecord([]byte(key), v, nil)
		return err
	})
	return kv, err
}

// List implements store.Store. The values of one listing share one
// allocation (each capped to its own length).
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	var out []store.KV
	var rev int64
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rev = readRev(tx)
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		var arena []byte
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if cap(arena)-len(arena) < len(v) {
				arena = make([]byte, 0, max(64<<10, len(v)))
			}
			kv, err := decodeRecord(k, v, &arena)
			if err != nil {
				return err
			}
			out = append(out, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// Rev implements store.Store. It is the last revision published to
// watchers: every event up to it is queued on every live watcher before
// Rev reports it (store.Store's Rev contract), which internal/store/cache
// relies on to serve reads as fresh as the store's.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, nil
}

// Close implements store.Store: it waits for the commit in progress, ends
// every watch and closes the file. Txns not yet committed fail with
// store.ErrClosed. Closing twice is harmless.
func (s *Store) Close() error {
	s.close.Do(func() {
		s.closed.Store(true)
		close(s.done)
		<-s.loopDone
		s.mu.Lock()
		for w := range s.watchers {
			s.dropLocked(w)
		}
		s.mu.Unlock()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

var _ store.Store = (*Store)(nil)
