package image

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEntryPath(t *testing.T) {
	tests := []struct {
		name, want string
		wantErr    bool
	}{
		{"etc/passwd", "etc/passwd", false},
		{"./etc/passwd", "etc/passwd", false},
		{"/etc/passwd", "etc/passwd", false},
		{"etc/", "etc", false},
		{"./", "", false},
		{"/", "", false},
		{"a//b/./c", "a/b/c", false},
		{"../etc/passwd", "", true},
		{"a/../../etc", "", true},
		{"a/../b", "", true}, // any ".." is refused, even one that stays inside
		{"..", "", true},
		{"a/..", "", true},
		{"a\x00b", "", true},
		{"...", "...", false},
		{"a/..b", "a/..b", false},
	}
	for _, tt := range tests {
		got, err := entryPath(tt.name)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("entryPath(%q) = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestWhiteoutOf(t *testing.T) {
	tests := []struct {
		rel     string
		kind    whiteoutKind
		target  string
		wantErr bool
	}{
		{"etc/passwd", notWhiteout, "", false},
		{"etc/.whatever", notWhiteout, "", false},
		{"etc/.wh.passwd", fileWhiteout, "etc/passwd", false},
		{".wh.top", fileWhiteout, "top", false},
		{"a/b/.wh..hidden", fileWhiteout, "a/b/.hidden", false},
		{"opaque/.wh..wh..opq", opaqueWhiteout, "opaque", false},
		{".wh..wh..opq", opaqueWhiteout, "", false},
		{"a/.wh.", notWhiteout, "", true},
		{"a/.wh..", notWhiteout, "", true},
		{"a/.wh...", notWhiteout, "", true},
		{"a/.wh..wh.other", notWhiteout, "", true},
	}
	for _, tt := range tests {
		kind, target, err := whiteoutOf(tt.rel)
		if kind != tt.kind || target != tt.target || (err != nil) != tt.wantErr {
			t.Errorf("whiteoutOf(%q) = %v, %q, %v; want %v, %q, error %v", tt.rel, kind, target, err, tt.kind, tt.target, tt.wantErr)
		}
	}
}

func TestParents(t *testing.T) {
	tests := map[string][]string{
		"a":     nil,
		"a/b":   {"a"},
		"a/b/c": {"a", "a/b"},
	}
	for in, want := range tests {
		if got := parents(in); !slices.Equal(got, want) {
			t.Errorf("parents(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuthKey(t *testing.T) {
	tests := map[string]string{
		"https://index.docker.io/v1/": "index.docker.io",
		"docker.io":                   "index.docker.io",
		"index.docker.io":             "index.docker.io",
		"127.0.0.1:5000":              "127.0.0.1:5000",
		"http://127.0.0.1:5000":       "127.0.0.1:5000",
		"Registry.Example.com/v2/":    "registry.example.com",
	}
	for in, want := range tests {
		if got := authKey(in); got != want {
			t.Errorf("authKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigAuth(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	enc := base64.StdEncoding.EncodeToString([]byte("alice:s3cret:with:colons"))
	cfg := `{"auths": {
		"https://index.docker.io/v1/": {"auth": "` + enc + `"},
		"127.0.0.1:5000": {"username": "bob", "password": "pw"},
		"ghcr.io": {"identitytoken": "tok"},
		"bad.example": {"auth": "!!!"}
	}}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		registry, user, pass, token string
		wantErr                     bool
	}{
		{"index.docker.io", "alice", "s3cret:with:colons", "", false},
		{"127.0.0.1:5000", "bob", "pw", "", false},
		{"ghcr.io", "", "", "tok", false},
		{"other.example", "", "", "", false},
		{"bad.example", "", "", "", true},
	}
	for _, tt := range tests {
		got, err := configAuth(path, tt.registry)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: error %v, want error %v", tt.registry, err, tt.wantErr)
			continue
		}
		if got.Username != tt.user || got.Password != tt.pass || got.IdentityToken != tt.token {
			t.Errorf("%s: got %+v", tt.registry, got)
		}
	}
	if _, err := configAuth(filepath.Join(dir, "missing.json"), "x"); err == nil {
		t.Error("missing config.json: no error")
	}
}

func TestChooseEvictions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sizes := map[string]int64{"base": 100, "a": 10, "b": 20, "c": 40, "orphan": 0}
	old := lruImage{Digest: "old", LastUsed: t0, Items: []string{"base", "a"}}
	mid := lruImage{Digest: "mid", LastUsed: t0.Add(time.Hour), Items: []string{"base", "b"}}
	recent := lruImage{Digest: "recent", LastUsed: t0.Add(2 * time.Hour), Items: []string{"c"}}
	oldInUse := old
	oldInUse.InUse = true
	// total = 170
	tests := []struct {
		name   string
		images []lruImage
		max    int64
		want   []string
	}{
		{"fits", []lruImage{old, mid, recent}, 170, nil},
		{"oldest first; shared base not counted as freed", []lruImage{recent, mid, old}, 165, []string{"old"}},
		{"evicting until the shared base goes", []lruImage{old, mid, recent}, 50, []string{"old", "mid"}},
		{"everything", []lruImage{old, mid, recent}, 1, []string{"old", "mid", "recent"}},
		{"in use is skipped", []lruImage{oldInUse, mid, recent}, 140, []string{"mid", "recent"}},
		{"only in use left", []lruImage{oldInUse}, 1, nil},
	}
	for _, tt := range tests {
		if got := chooseEvictions(tt.images, sizes, tt.max); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"web-1", "a.b", "x_y"} {
		if err := validID(ok); err != nil {
			t.Errorf("validID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00"} {
		if err := validID(bad); err == nil {
			t.Errorf("validID(%q): no error", bad)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("got %q", got)
	}
	if got := unescapeMountinfo(`/plain`); got != "/plain" {
		t.Errorf("got %q", got)
	}
}
