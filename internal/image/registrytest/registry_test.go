package registrytest

import (
	"net/http"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestStartWithAuthAndPush(t *testing.T) {
	r := Start(t, Options{Username: "u", Password: "p"})
	resp, err := http.Get("http://" + r.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /v2/: %d, want 401", resp.StatusCode)
	}
	ref, digest := r.PushBusybox(t, "busybox:1")
	tag, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(tag, remote.WithAuth(r.Auth()))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Errorf("digest %s, want %s", desc.Digest, digest)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" || cfg.Config.Env[0] != DefaultPath {
		t.Errorf("config %+v", cfg.Config)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	Require(t, Binary, "docker-registry")
	r, err := Launch(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s left: %v", r.Dir, err)
	}
	if _, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
		t.Error("registry still answers after Close")
	}
}

func TestBuildersAreReproducible(t *testing.T) {
	a, err := Random(1<<20, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Random(1<<20, 2, 3)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("Random not reproducible: %s vs %s", da, db)
	}
	Require(t, BusyboxPath, "busybox-static")
	idx, err := MultiArch()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 2 {
		t.Fatalf("index %v %v", m, err)
	}
}
