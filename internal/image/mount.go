package image

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/rootfs"
)

// maxMountData is the kernel's limit on mount(2) option data (one page).
const maxMountData = 4096

func imageConfig(cfg *v1.ConfigFile) rootfs.ImageConfig {
	c := cfg.Config
	return rootfs.ImageConfig{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
}

// validID refuses workload ids that are not a single path element.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 200 {
		return fmt.Errorf("workload id %q cannot name a directory", id)
	}
	return nil
}

// Prepare implements rootfs.Provider: it makes sure ref is stored (pulling
// it if missing, with the rootfs.Credentials ctx carries, else
// Options.DefaultAuth) and mounts an overlayfs for
// workload id at containers/<id>/rootfs, the image's layers as lower dirs
// and containers/<id>/upper as the writable layer. Preparing a prepared
// id returns the same mount, remounting it if it is gone (after a
// reboot); the writable layer is kept.
func (s *Service) Prepare(ctx context.Context, ref, id string) (rootfs.Mount, error) {
	if err := validID(id); err != nil {
		return rootfs.Mount{}, err
	}
	unlock := s.keys.lock("container/" + id)
	defer unlock()
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()

	key, err := s.normalize(ref)
	if err != nil {
		return rootfs.Mount{}, err
	}
	s.mu.Lock()
	meta, prepared := s.containers[id]
	s.mu.Unlock()
	if prepared && meta.Ref != key {
		return rootfs.Mount{}, fmt.Errorf("workload %s is already prepared from image %s, not %s; release it first", id, meta.Ref, key)
	}

	var rec *imageRecord
	s.mu.Lock()
	if prepared {
		rec = s.idx.Images[meta.Digest]
	} else {
		rec = s.lookup(key)
	}
	s.mu.Unlock()
	if rec == nil {
		pullRef := ref
		if prepared {
			// Keep the image the writable layer was made on.
			if r, err := s.parseRef(key); err == nil {
				pullRef = r.Context().Digest(meta.Digest).Name()
			}
		}
		var opts PullOptions
		if c, ok := rootfs.CredentialsFrom(ctx); ok {
			opts.Auth = Auth{Username: c.Username, Password: c.Password, ConfigJSON: c.DockerConfig}
		}
		img, err := s.pull(ctx, pullRef, opts)
		if err != nil {
			return rootfs.Mount{}, fmt.Errorf("prepare %s: %w", id, err)
		}
		s.mu.Lock()
		rec = s.idx.Images[img.Digest]
		s.mu.Unlock()
	}
	// Snapshots are rebuilt from blobs if something deleted them.
	for _, l := range rec.Layers {
		if _, err := s.ensureSnapshot(ctx, l, fmt.Sprintf("layer %s of %s", l.Digest, key)); err != nil {
			return rootfs.Mount{}, fmt.Errorf("prepare %s: %w", id, err)
		}
	}

	dir := s.containerPath(id)
	lowers, err := s.lowerDirs(rec)
	if err != nil {
		return rootfs.Mount{}, fmt.Errorf("prepare %s from %s: %w", id, key, err)
	}
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return rootfs.Mount{}, fmt.Errorf("prepare %s: %w", id, err)
		}
	}
	if !prepared {
		meta = containerMeta{Ref: key, Digest: rec.Digest}
		b, _ := json.Marshal(meta)
		if err := writeFileAtomic(filepath.Join(dir, "meta.json"), b, 0o600); err != nil {
			return rootfs.Mount{}, fmt.Errorf("prepare %s: %w", id, err)
		}
		s.mu.Lock()
		s.containers[id] = meta
		s.mu.Unlock()
	}
	target := filepath.Join(dir, "rootfs")
	mounted, err := isMountPoint(target)
	if err != nil {
		return rootfs.Mount{}, fmt.Errorf("prepare %s: %w", id, err)
	}
	if !mounted {
		if err := mountOverlay(target, lowers, filepath.Join(dir, "upper"), filepath.Join(dir, "work")); err != nil {
			if !prepared { // nothing of this workload existed before: leave nothing
				s.mu.Lock()
				delete(s.containers, id)
				s.mu.Unlock()
				os.RemoveAll(dir)
			}
			return rootfs.Mount{}, fmt.Errorf("prepare %s from %s: mount overlay at %s: %w", id, key, target, err)
		}
	}
	s.touch(rec.Digest)
	return rootfs.Mount{Path: target, Config: rec.Config}, nil
}

// lowerDirs returns the image's snapshot directories, top layer first, as
// overlayfs wants them.
func (s *Service) lowerDirs(rec *imageRecord) ([]string, error) {
	if len(rec.Layers) == 0 {
		return nil, errors.New("image has no layers")
	}
	lowers := make([]string, 0, len(rec.Layers))
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		h, err := hexOf(rec.Layers[i].DiffID)
		if err != nil {
			return nil, err
		}
		lowers = append(lowers, s.snapshotFS(h))
	}
	return lowers, nil
}

// mountOverlay mounts an overlayfs at target. Lower dirs go in one
// mount(2) option string when they fit the kernel's page-sized limit;
// images with more layers are mounted through fsconfig(2), one
// "lowerdir+" per layer (Linux 6.8 and later).
func mountOverlay(target string, lowers []string, upper, work string) error {
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) < maxMountData {
		return unix.Mount("overlay", target, "overlay", 0, data)
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%d layers need more than %d bytes of mount options, and fsopen(overlay) failed: %w", len(lowers), maxMountData, err)
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return fmt.Errorf("%d layers need more than %d bytes of mount options, and this kernel's overlayfs has no lowerdir+ (Linux 6.8+): %w", len(lowers), maxMountData, err)
		}
	}
	if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
		return fmt.Errorf("overlay upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
		return fmt.Errorf("overlay workdir: %w", err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("overlay create: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("overlay fsmount: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// touch records that an image was used now.
func (s *Service) touch(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.idx.Images[digest]; rec != nil {
		rec.LastUsed = s.now().UTC()
		_ = s.saveIndex() // best effort: only LRU order depends on it
	}
}

// Release implements rootfs.Provider: it unmounts workload id's root
// filesystem (lazily if it is busy) and deletes its writable layer.
// Releasing an unknown id is not an error.
func (s *Service) Release(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	unlock := s.keys.lock("container/" + id)
	defer unlock()
	dir := s.containerPath(id)
	target := filepath.Join(dir, "rootfs")
	if err := unmount(target); err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.containers, id)
	s.mu.Unlock()
	return nil
}

// unmount unmounts target if it is a mount point, detaching lazily when
// it is busy.
func unmount(target string) error {
	for {
		mounted, err := isMountPoint(target)
		if err != nil || !mounted {
			return err
		}
		err = unix.Unmount(target, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
}

// isMountPoint reports whether path is a mount point, per
// /proc/self/mountinfo.
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for space…).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
