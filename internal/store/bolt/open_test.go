package bolt

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/store"
)

// writeDB makes a real store file with some data and returns its path.
func writeDB(t *testing.T, dir string, keys int) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("real-%d.db", keys))
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < keys; i += 50 {
		var ops []store.Op
		for j := i; j < i+50 && j < keys; j++ {
			ops = append(ops, store.Put(fmt.Sprintf("/k/%05d", j), make([]byte, 512)))
		}
		if _, err := s.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string, size int64) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		b = b[:size]
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	real := writeDB(t, dir, 2000)
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}

	cases := map[string]func(p string){
		"garbage": func(p string) {
			if err := os.WriteFile(p, []byte(strings.Repeat("not a database ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to 1000 bytes": func(p string) { copyFile(t, real, p, 1000) },
		"truncated to half":       func(p string) { copyFile(t, real, p, fi.Size()/2) },
		"truncated to 3 pages":    func(p string) { copyFile(t, real, p, 3*4096) },
		"meta pages zeroed": func(p string) {
			copyFile(t, real, p, -1)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 2*4096), 0); err != nil {
				t.Fatal(err)
			}
		},
		"another program's bbolt file": func(p string) {
			db, err := bbolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err }); err != nil {
				t.Fatal(err)
			}
			db.Close()
		},
		"another berth format": func(p string) {
			copyFile(t, real, p, -1)
			db, err := bbolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte("berth-store-99")) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "berth.db")
			mk(p)
			before, _ := os.ReadFile(p)
			s, err := Open(p, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			want := "open " + p + ": data file is corrupt or not a berth database: "
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Open: %v\nwant an error starting %q", err, want)
			}
			t.Logf("%v", err)
			if after, _ := os.ReadFile(p); string(after) != string(before) {
				t.Fatal("Open changed a file it refused")
			}
			// The refusal released the file: it can be moved aside and a
			// fresh store created in its place.
			if err := os.Rename(p, p+".bad"); err != nil {
				t.Fatal(err)
			}
			s, err = Open(p, Options{})
			if err != nil {
				t.Fatalf("Open of a fresh file after moving the bad one away: %v", err)
			}
			s.Close()
		})
	}

	// The untouched original still opens with all its data.
	s, err := Open(real, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if kvs, _, err := s.List(context.Background(), "/k/"); err != nil || len(kvs) != 2000 {
		t.Fatalf("original: %d keys, %v", len(kvs), err)
	}
}

func TestOpenEmptyFileStartsFresh(t *testing.T) {
	// A zero-length file (a crash while creating it) holds no data to lose.
	p := filepath.Join(t.TempDir(), "berth.db")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestOpenPathErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-dir", "berth.db")
	if _, err := Open(missing, Options{}); err == nil || !strings.Contains(err.Error(), "directory "+filepath.Dir(missing)+" does not exist") {
		t.Errorf("Open in a missing directory: %v", err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "cannot open the data file") {
		t.Errorf("Open of a directory: %v", err)
	}
}

func TestOpenPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root is not refused by file modes (see TestOpenErrorMessages for the message)")
	}
	p := filepath.Join(t.TempDir(), "berth.db")
	if err := os.WriteFile(p, nil, 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, Options{}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Open of an unreadable file: %v", err)
	}
}

func TestOpenErrorMessages(t *testing.T) {
	p := "/x/berth.db"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}, "open /x/berth.db: permission denied: berth must be able to read and write"},
		{&fs.PathError{Op: "open", Path: p, Err: syscall.EROFS}, "open /x/berth.db: cannot open the data file: open /x/berth.db: read-only file system"},
		{syscall.ENOLCK, "open /x/berth.db: cannot lock or read the data file: no locks available"},
		{fmt.Errorf("invalid database"), "open /x/berth.db: data file is corrupt or not a berth database: invalid database"},
	} {
		if got := openError(p, tc.err).Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("openError(%v) = %q, want prefix %q", tc.err, got, tc.want)
		}
	}
}
