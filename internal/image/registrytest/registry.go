// Package registrytest runs Debian's docker-registry (distribution 2.x) on
// 127.0.0.1 for tests and benchmarks, and builds and pushes test images
// with go-containerregistry: a busybox image, an image with whiteouts, a
// multi-arch index and a large image of random data.
//
// A test needs the docker-registry package (/usr/bin/docker-registry) and,
// for Busybox, busybox-static (/bin/busybox). When one is missing the test
// is skipped, or fails when CI=true.
package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry executable Start runs.
const Binary = "/usr/bin/docker-registry"

// Options configure a registry.
type Options struct {
	// Username and Password, when set, turn on htpasswd basic auth with
	// this one user.
	Username, Password string
}

// Registry is a running docker-registry.
type Registry struct {
	// Host is 127.0.0.1:<port>, the registry part of image references.
	Host string
	// Dir holds the registry's config and storage; removed at cleanup.
	Dir string
	// Username and Password are the credentials when auth is on.
	Username, Password string

	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

// Require skips tb (fails it when CI=true) if path does not exist.
func Require(tb testing.TB, path, pkg string) {
	tb.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	msg := fmt.Sprintf("%s not found (install the Debian package %s)", path, pkg)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Start runs a registry for the duration of tb: random free port on
// 127.0.0.1, fresh storage, stopped and deleted in tb.Cleanup.
func Start(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	Require(tb, Binary, "docker-registry")
	r, err := Launch(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

// Launch is Start for callers without a testing.TB (berth bench): the
// caller must Close the registry.
func Launch(opts Options) (*Registry, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("%s not found (install the Debian package docker-registry): %w", Binary, err)
	}
	dir, err := os.MkdirTemp("", "berth-test-registry-*")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		r, err := start(dir, opts)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start docker-registry: %w", lastErr)
}

// Close stops the registry and deletes its storage.
func (r *Registry) Close() {
	r.stop()
	os.RemoveAll(r.Dir)
}

func start(dir string, opts Options) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Host: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir,
		Username: opts.Username, Password: opts.Password,
		stderr: &bytes.Buffer{}, exited: make(chan struct{}),
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: berth-test-secret
`, filepath.Join(dir, "data"), r.Host)
	if opts.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	r.cmd = exec.Command(Binary, "serve", cfgPath)
	r.cmd.Stdout = r.stderr
	r.cmd.Stderr = r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		r.cmd.Wait()
		close(r.exited)
	}()
	if err := r.waitReady(); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// waitReady polls /v2/ until the registry answers (200, or 401 with auth).
func (r *Registry) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return fmt.Errorf("docker-registry exited: %s", strings.TrimSpace(r.stderr.String()))
		default:
		}
		resp, err := client.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("docker-registry did not answer /v2/ within 30s")
}

func (r *Registry) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Ref returns the reference of repoTag ("busybox:latest") in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Auth returns the registry's credentials (anonymous without auth).
func (r *Registry) Auth() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// Push pushes img as repoTag ("app:1") and returns its full reference
// and manifest digest.
func (r *Registry) Push(tb testing.TB, repoTag string, img v1.Image) (ref, digest string) {
	tb.Helper()
	ref, digest, err := r.PushImage(context.Background(), repoTag, img)
	if err != nil {
		tb.Fatal(err)
	}
	return ref, digest
}

// PushImage is Push for callers without a testing.TB (berth bench).
func (r *Registry) PushImage(ctx context.Context, repoTag string, img v1.Image) (ref, digest string, err error) {
	tag, err := name.NewTag(r.Ref(repoTag), name.Insecure)
	if err != nil {
		return "", "", err
	}
	if err := remote.Write(tag, img, remote.WithAuth(r.Auth()), remote.WithContext(ctx)); err != nil {
		return "", "", fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", "", err
	}
	return tag.Name(), d.String(), nil
}

// PushIndex pushes a multi-arch index as repoTag and returns its full
// reference and digest.
func (r *Registry) PushIndex(tb testing.TB, repoTag string, idx v1.ImageIndex) (ref, digest string) {
	tb.Helper()
	tag, err := name.NewTag(r.Ref(repoTag), name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx, remote.WithAuth(r.Auth())); err != nil {
		tb.Fatalf("push %s: %v", tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return tag.Name(), d.String()
}
