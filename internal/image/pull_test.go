package image

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// layerDigests returns img's layer and diffID digests.
func layerDigests(t *testing.T, img v1.Image) (digests, diffIDs []string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		digests = append(digests, d.String())
		diffIDs = append(diffIDs, diff.String())
	}
	return digests, diffIDs
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ref, digest := reg.PushBusybox(t, "busybox:latest")
	counter := newCounter()
	s := newService(t, Options{Transport: counter})

	var mu sync.Mutex
	var progress []Progress
	img, err := s.Pull(bg(), ref, PullOptions{Progress: func(p Progress) {
		mu.Lock()
		progress = append(progress, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != digest {
		t.Errorf("digest %s, want %s", img.Digest, digest)
	}
	if len(img.Names) != 1 || img.Names[0] != ref {
		t.Errorf("names %v, want [%s]", img.Names, ref)
	}
	if strings.Join(img.Config.Cmd, " ") != "sh" || len(img.Config.Env) == 0 || !strings.HasPrefix(img.Config.Env[0], "PATH=") {
		t.Errorf("config %+v", img.Config)
	}
	if img.Platform != "linux/"+runtime.GOARCH {
		t.Errorf("platform %q", img.Platform)
	}
	if len(img.Layers) != 1 || img.Size <= 0 {
		t.Fatalf("layers %+v", img.Layers)
	}
	l := img.Layers[0]
	if !exists(s.blobPath(strings.TrimPrefix(l.Digest, "sha256:"))) {
		t.Error("layer blob not stored")
	}
	if !exists(filepath.Join(s.snapshotFS(strings.TrimPrefix(l.DiffID, "sha256:")), "bin", "busybox")) {
		t.Error("snapshot has no bin/busybox")
	}
	statuses := map[ProgressStatus]bool{}
	for _, p := range progress {
		statuses[p.Status] = true
	}
	if !statuses[LayerDownloaded] || !statuses[LayerUnpacked] {
		t.Errorf("progress statuses %v", statuses)
	}

	// A second pull, by tag and by digest, downloads no layer again.
	if _, err := s.Pull(bg(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	byDigest := reg.Ref("busybox@" + digest)
	img2, err := s.Pull(bg(), byDigest, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img2.Digest != digest || len(img2.Names) != 2 {
		t.Errorf("pull by digest: %s names %v", img2.Digest, img2.Names)
	}
	if n := counter.blobGets(l.Digest); n != 1 {
		t.Errorf("layer fetched %d times, want 1", n)
	}

	got, err := s.Get(byDigest)
	if err != nil || got.Digest != digest {
		t.Errorf("Get by digest: %v %v", got.Digest, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Errorf("List: %v %v", list, err)
	}

	// The index survives a restart.
	s.Close()
	s2, err := Open(s.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Get(ref); err != nil || got.Digest != digest {
		t.Errorf("after reopen: %v %v", got.Digest, err)
	}
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Push(t, "whiteout:1", img)
	counter := newCounter()
	s := newService(t, Options{Transport: counter})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(bg(), ref, PullOptions{})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	digests, _ := layerDigests(t, img)
	for _, d := range digests {
		if n := counter.blobGets(d); n != 1 {
			t.Errorf("layer %s fetched %d times, want 1", d, n)
		}
	}
}

func TestPullAuth(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Username: "berth", Password: "s3cret"})
	ref, _ := reg.PushBusybox(t, "private/busybox:1")

	t.Run("anonymous is refused", func(t *testing.T) {
		s := newService(t, Options{})
		_, err := s.Pull(bg(), ref, PullOptions{})
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
			t.Fatalf("error %v, want unauthorized", err)
		}
	})
	t.Run("wrong password is refused", func(t *testing.T) {
		s := newService(t, Options{})
		_, err := s.Pull(bg(), ref, PullOptions{Auth: Auth{Username: "berth", Password: "wrong"}})
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
			t.Fatalf("error %v, want unauthorized", err)
		}
	})
	t.Run("explicit credentials", func(t *testing.T) {
		s := newService(t, Options{})
		if _, err := s.Pull(bg(), ref, PullOptions{Auth: Auth{Username: "berth", Password: "s3cret"}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("config.json auth field", func(t *testing.T) {
		path := filepath.Join(tempDir(t, "docker-config"), "config.json")
		enc := base64.StdEncoding.EncodeToString([]byte("berth:s3cret"))
		os.WriteFile(path, []byte(`{"auths":{"http://`+reg.Host+`":{"auth":"`+enc+`"}}}`), 0o600)
		// Through DefaultAuth, as Prepare-triggered pulls use it.
		s := newService(t, Options{DefaultAuth: Auth{ConfigPath: path}})
		if _, err := s.Pull(bg(), ref, PullOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("config.json username and password", func(t *testing.T) {
		path := filepath.Join(tempDir(t, "docker-config"), "config.json")
		os.WriteFile(path, []byte(`{"auths":{"`+reg.Host+`":{"username":"berth","password":"s3cret"}}}`), 0o600)
		s := newService(t, Options{})
		if _, err := s.Pull(bg(), ref, PullOptions{Auth: Auth{ConfigPath: path}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPullErrorsKeepRegistryMessage(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.PushBusybox(t, "busybox:latest")
	s := newService(t, Options{})

	_, err := s.Pull(bg(), reg.Ref("busybox:nope"), PullOptions{})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "manifest unknown") || !strings.Contains(err.Error(), reg.Host) {
		t.Errorf("unknown tag: %v", err)
	}
	_, err = s.Pull(bg(), reg.Ref("nosuchrepo:1"), PullOptions{})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown") {
		t.Errorf("unknown repo: %v", err)
	}
	dead := closedPort(t)
	_, err = s.Pull(bg(), dead+"/busybox:1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), dead) {
		t.Errorf("unreachable registry: %v", err)
	}
	if _, err := s.Pull(bg(), "UPPER/case:x", PullOptions{}); err == nil {
		t.Error("invalid reference: no error")
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("failed pulls stored %v", list)
	}
}

func TestPullMultiArch(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the test index has amd64 and arm64 images")
	}
	reg := registrytest.Start(t, registrytest.Options{})
	ref, _ := reg.PushMultiArch(t, "multi:1")
	s := newService(t, Options{})

	img, err := s.Pull(bg(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Platform != "linux/"+runtime.GOARCH {
		t.Errorf("default platform: got %s", img.Platform)
	}
	top := img.Layers[len(img.Layers)-1]
	b, err := os.ReadFile(filepath.Join(s.snapshotFS(strings.TrimPrefix(top.DiffID, "sha256:")), registrytest.ArchFile))
	if err != nil || string(b) != runtime.GOARCH {
		t.Errorf("%s = %q, %v", registrytest.ArchFile, b, err)
	}

	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	img2, err := s.Pull(bg(), ref, PullOptions{Platform: "linux/" + other})
	if err != nil {
		t.Fatal(err)
	}
	if img2.Platform != "linux/"+other || img2.Digest == img.Digest {
		t.Errorf("platform override: %s %s", img2.Platform, img2.Digest)
	}

	_, err = s.Pull(bg(), ref, PullOptions{Platform: "linux/s390x"})
	if err == nil || !strings.Contains(err.Error(), "linux/s390x") || !strings.Contains(err.Error(), "linux/amd64") || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("wrong platform: %v", err)
	}
}

func TestPullDigestMismatchStoresNothing(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "whiteout:1", img)
	digests, diffIDs := layerDigests(t, img)
	bad := digests[2]
	proxy := corruptingProxy(t, reg, bad)
	s := newService(t, Options{})

	_, err = s.Pull(bg(), proxy+"/whiteout:1", PullOptions{})
	var mm *DigestMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("error %v, want a DigestMismatchError", err)
	}
	if mm.Want != bad || mm.Got == bad || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), mm.Got) {
		t.Errorf("error %v does not name the layer and both digests", err)
	}
	if exists(s.blobPath(strings.TrimPrefix(bad, "sha256:"))) {
		t.Error("corrupt blob stored")
	}
	if exists(s.snapshotPath(strings.TrimPrefix(diffIDs[2], "sha256:"))) {
		t.Error("snapshot of corrupt layer stored")
	}
	if names := dirNames(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("image recorded: %v", list)
	}
	// Straight from the registry it works.
	if _, err := s.Pull(bg(), reg.Ref("whiteout:1"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedUnpackLeavesNothingTrusted(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := registrytest.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Push(t, "whiteout:1", img)
	digests, diffIDs := layerDigests(t, img)

	for _, mode := range []string{"failing reader", "cancelled context"} {
		t.Run(mode, func(t *testing.T) {
			counter := newCounter()
			s := newService(t, Options{Transport: counter, Concurrency: 1})
			ctx, cancel := context.WithCancel(bg())
			defer cancel()
			s.layerReaderHook = func(diffID string, r io.Reader) io.Reader {
				if diffID != diffIDs[0] {
					return r
				}
				if mode == "cancelled context" {
					return &cancelAfter{r: r, n: 64 << 10, cancel: cancel}
				}
				return &failAfter{r: r, n: 64 << 10}
			}
			if _, err := s.Pull(ctx, ref, PullOptions{}); err == nil {
				t.Fatal("pull succeeded")
			}
			if exists(s.snapshotPath(strings.TrimPrefix(diffIDs[0], "sha256:"))) {
				t.Error("half-unpacked snapshot is in snapshots/")
			}
			if names := dirNames(t, s.tmpDir()); len(names) != 0 {
				t.Errorf("temp left: %v", names)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("image recorded: %v", list)
			}
			s.layerReaderHook = nil
			got, err := s.Pull(bg(), ref, PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Layers) != 3 {
				t.Fatalf("layers %v", got.Layers)
			}
			if !exists(filepath.Join(s.snapshotFS(strings.TrimPrefix(diffIDs[0], "sha256:")), "bin", "busybox")) {
				t.Error("snapshot incomplete after the retry")
			}
			// The verified blob was kept: not downloaded again.
			if n := counter.blobGets(digests[0]); n > 1 {
				t.Errorf("layer downloaded %d times", n)
			}
		})
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func TestOpenRemovesStaleTemp(t *testing.T) {
	s := newService(t, Options{})
	stale := filepath.Join(s.tmpDir(), "snap-0123456789ab-42")
	os.MkdirAll(filepath.Join(stale, "fs", "etc"), 0o755)
	os.WriteFile(filepath.Join(s.tmpDir(), "blob-0123-1"), []byte("partial"), 0o600)
	s.Close()
	s2, err := Open(s.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if names := dirNames(t, s2.tmpDir()); len(names) != 0 {
		t.Errorf("stale temp left: %v", names)
	}
	if _, err := Open(s.Dir(), Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open of an open store: %v", err)
	}
}
