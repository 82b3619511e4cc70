package secrets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
)

func newService(t *testing.T) (*Service, store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := OpenBox(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Store: st, Box: box}, st, dir
}

func TestBoxKeyFileAndTamper(t *testing.T) {
	dir := t.TempDir()
	b1, err := OpenBox(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	sealed := b1.Seal([]byte("hunter2"), []byte("/secrets/a/b"))
	b2, err := OpenBox(dir) // the same key is read back
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := b2.Open(sealed, []byte("/secrets/a/b")); err != nil || string(plain) != "hunter2" {
		t.Fatalf("open: %q %v", plain, err)
	}
	if _, err := b2.Open(sealed, []byte("/secrets/a/other")); err == nil {
		t.Fatal("a sealed value opened under another secret's key")
	}
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, err := b2.Open(bad, []byte("/secrets/a/b")); err == nil || !strings.Contains(err.Error(), "tampered") {
		t.Fatalf("tampered value: %v", err)
	}
	other, _ := NewBox(bytes.Repeat([]byte{7}, 32))
	if _, err := other.Open(sealed, []byte("/secrets/a/b")); err == nil {
		t.Fatal("opened with another key")
	}
	if _, err := NewBox([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}

// TestValuesAreSealedAtRest: the store holds no plaintext; the API-facing
// List has names and keys only; Get opens the values.
func TestValuesAreSealedAtRest(t *testing.T) {
	s, st, _ := newService(t)
	ctx := context.Background()
	info, err := s.Put(ctx, "team-a", "regcred", map[string]string{model.SecretUsername: "ci", model.SecretPassword: "s3cr3t-value"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(info.Keys, ",") != "password,username" {
		t.Fatalf("keys %v", info.Keys)
	}
	kvs, _, err := st.List(ctx, model.PrefixSecrets)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("list: %v %v", kvs, err)
	}
	if bytes.Contains(kvs[0].Value, []byte("s3cr3t-value")) || bytes.Contains(kvs[0].Value, []byte("czNjcjN0")) {
		t.Fatal("the store holds the value in clear")
	}
	list, err := s.List(ctx, "team-a")
	if err != nil || len(list) != 1 || list[0].Name != "regcred" {
		t.Fatalf("List: %+v %v", list, err)
	}
	data, err := s.Get(ctx, "team-a", "regcred")
	if err != nil || data[model.SecretPassword] != "s3cr3t-value" {
		t.Fatalf("Get: %v %v", data, err)
	}
	if _, err := s.Get(ctx, "team-b", "regcred"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another namespace's secret: %v", err)
	}
	if err := s.Delete(ctx, "team-a", "regcred"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "team-a", "regcred"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete twice: %v", err)
	}
}

func TestPutValidates(t *testing.T) {
	s, st, _ := newService(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		data  map[string]string
		field string
	}{
		{"Bad_Name", map[string]string{"a": "b"}, "name"},
		{"ok", nil, "data"},
		{"ok", map[string]string{"bad key!": "x"}, `data["bad key!"]`},
		{"ok", map[string]string{"big": strings.Repeat("x", maxValueBytes+1)}, "data"},
	}
	for _, tc := range cases {
		_, err := s.Put(ctx, "default", tc.name, tc.data)
		var verr *model.ValidationError
		if !errors.As(err, &verr) || verr.Errors[0].Field != tc.field {
			t.Errorf("%s %v: err %v, want a field error on %s", tc.name, len(tc.data), err, tc.field)
		}
	}
	if kvs, _, _ := st.List(ctx, model.PrefixSecrets); len(kvs) != 0 {
		t.Fatalf("an invalid secret was stored: %d", len(kvs))
	}
}
