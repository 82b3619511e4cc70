package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	major    int64
	minor    int64
	xattrs   map[string]string
}

func makeTar(t *testing.T, entries ...tarEntry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

func TestUnpackTarConvertsAndKeepsMetadata(t *testing.T) {
	requireRoot(t)
	root := tempDir(t, "unpack")
	buf := makeTar(t,
		tarEntry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "etc/owned", uid: 1234, gid: 5678, mode: 0o640, body: "x"},
		tarEntry{name: "bin/", typ: tar.TypeDir, mode: 0o711},
		tarEntry{name: "bin/suid", uid: 0, gid: 0, mode: 0o4755, body: "#!"},
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		tarEntry{name: "bin/hard", typ: tar.TypeLink, link: "bin/suid"},
		tarEntry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		tarEntry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		tarEntry{name: "etc/.wh.deleted", body: ""},
		tarEntry{name: "opq/.wh..wh..opq"},
		tarEntry{name: "opq/", typ: tar.TypeDir, mode: 0o750},
		tarEntry{name: "opq/new", body: "new"},
		tarEntry{name: "x/attr", body: "a", xattrs: map[string]string{"user.berth": "yes"}},
	)
	if _, err := unpackTar(context.Background(), buf, root); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	mustLstat := func(rel string) unix.Stat_t {
		t.Helper()
		if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		return st
	}
	if s := mustLstat("etc/owned"); s.Uid != 1234 || s.Gid != 5678 || s.Mode&0o7777 != 0o640 {
		t.Errorf("etc/owned: uid %d gid %d mode %o", s.Uid, s.Gid, s.Mode&0o7777)
	}
	if s := mustLstat("bin/suid"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("setuid bit lost: %o", s.Mode&0o7777)
	}
	if s := mustLstat("bin"); s.Mode&0o7777 != 0o711 {
		t.Errorf("bin mode %o", s.Mode&0o7777)
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("symlink target %q", l)
	}
	if a, b := mustLstat("bin/suid"), mustLstat("bin/hard"); a.Ino != b.Ino {
		t.Error("hard link is a copy")
	}
	if s := mustLstat("dev/null"); s.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(s.Rdev) != 1 || unix.Minor(s.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if s := mustLstat("run/fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o", s.Mode)
	}
	if s := mustLstat("etc/deleted"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("whiteout: mode %o rdev %d, want char 0/0", s.Mode, s.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/.wh.deleted")); !errors.Is(err, os.ErrNotExist) {
		t.Error(".wh. entry written as is")
	}
	val := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(root, "opq"), "trusted.overlay.opaque", val)
	if err != nil || string(val[:n]) != "y" {
		t.Errorf("opaque xattr: %q, %v", val[:n], err)
	}
	if s := mustLstat("opq"); s.Mode&0o7777 != 0o750 {
		t.Errorf("opaque dir mode %o", s.Mode&0o7777)
	}
	if _, err := os.Lstat(filepath.Join(root, "opq/.wh..wh..opq")); !errors.Is(err, os.ErrNotExist) {
		t.Error("opaque marker written as a file")
	}
	n, err = unix.Lgetxattr(filepath.Join(root, "x/attr"), "user.berth", val)
	if err != nil || string(val[:n]) != "yes" {
		t.Errorf("xattr: %q, %v", val[:n], err)
	}
}

func TestUnpackTarRejectsEscapes(t *testing.T) {
	requireRoot(t)
	outside := tempDir(t, "outside")
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr string
	}{
		{"dotdot", []tarEntry{{name: "../escape", body: "x"}}, "path traversal"},
		{"nested dotdot", []tarEntry{{name: "a/../../escape", body: "x"}}, "path traversal"},
		{"write through symlink", []tarEntry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/escape", body: "x"},
		}, "not a directory"},
		{"write through relative symlink", []tarEntry{
			{name: "link", typ: tar.TypeSymlink, link: "../../../../" + outside},
			{name: "link/escape", body: "x"},
		}, "not a directory"},
		{"hard link outside", []tarEntry{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}, "path traversal"},
		{"absolute hard link to a host file", []tarEntry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, "not a file earlier in the same layer"},
		{"whiteout through symlink", []tarEntry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/.wh.x"},
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tempDir(t, "unpack")
			_, err := unpackTar(context.Background(), makeTar(t, tt.entries...), root)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if names := dirNames(t, outside); len(names) != 0 {
				t.Fatalf("wrote outside the layer: %v", names)
			}
		})
	}
}

func TestUnpackTarLaterEntryReplacesEarlier(t *testing.T) {
	requireRoot(t)
	root := tempDir(t, "unpack")
	buf := makeTar(t,
		tarEntry{name: "a", body: "first"},
		tarEntry{name: "a", body: "second"},
		tarEntry{name: "d/f", body: "x"},
		tarEntry{name: "d", typ: tar.TypeSymlink, link: "/tmp"},
	)
	if _, err := unpackTar(context.Background(), buf, root); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "second" {
		t.Errorf("a = %q", b)
	}
	if l, err := os.Readlink(filepath.Join(root, "d")); err != nil || l != "/tmp" {
		t.Errorf("d: %q %v", l, err)
	}
}

// TestUnpackTarRefusesWhatCannotFit: a (sparse) entry declaring more
// bytes than the layer may write is refused before anything is written.
func TestUnpackTarRefusesWhatCannotFit(t *testing.T) {
	requireRoot(t)
	defer func(old int64) { maxLayerBytes = old }(maxLayerBytes)
	maxLayerBytes = 1 << 10
	root := tempDir(t, "unpack-limit")
	_, err := unpackTar(context.Background(), makeTar(t, tarEntry{name: "big", body: strings.Repeat("x", 2<<10)}), root)
	if err == nil || !strings.Contains(err.Error(), "would exceed the space left") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("big was written: %v", err)
	}
}
