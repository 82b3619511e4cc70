package image

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// PullOptions configure one pull.
type PullOptions struct {
	// Auth are the registry credentials; empty means Options.DefaultAuth.
	Auth Auth
	// Platform is os/arch[/variant] to choose from a multi-arch image;
	// empty means Options.Platform.
	Platform string
	// Progress, if set, is called as layers are fetched. Calls are
	// serialised (never concurrent) but may come from any goroutine.
	Progress func(Progress)
}

// ProgressStatus is the state of one layer in a Progress report.
type ProgressStatus string

// Layer states reported to PullOptions.Progress.
const (
	// LayerCached: the layer was already in the store; nothing downloaded.
	LayerCached ProgressStatus = "cached"
	// LayerDownloading: Done of Size bytes have arrived.
	LayerDownloading ProgressStatus = "downloading"
	// LayerDownloaded: the blob is stored and verified.
	LayerDownloaded ProgressStatus = "downloaded"
	// LayerUnpacked: the layer's snapshot is ready.
	LayerUnpacked ProgressStatus = "unpacked"
)

// Progress reports one layer's progress during a pull or import.
type Progress struct {
	// Ref is the image being pulled, Layer the layer's digest.
	Ref, Layer string
	Status     ProgressStatus
	// Done and Size are bytes of the compressed layer.
	Done, Size int64
}

// Pull fetches ref (by tag or digest) into the store and returns it.
// Layers already stored are not downloaded again; every blob is verified
// against its digest while it is written.
func (s *Service) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	return s.pull(ctx, ref, opts)
}

// parseRef parses ref, allowing plain HTTP for loopback registries and
// those listed in Options.InsecureRegistries.
func (s *Service) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	host := reg
	if h, _, err := net.SplitHostPort(reg); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	insecure := host == "localhost" || slices.Contains(s.opts.InsecureRegistries, reg) || slices.Contains(s.opts.InsecureRegistries, host)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		insecure = true
	}
	if !insecure {
		return r, nil
	}
	return name.ParseReference(ref, name.Insecure)
}

// normalize returns the store's name for ref (e.g. "busybox" →
// "index.docker.io/library/busybox:latest").
func (s *Service) normalize(ref string) (string, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return "", err
	}
	return r.Name(), nil
}

func (s *Service) pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	registry := r.Context().RegistryStr()
	a := opts.Auth
	if a.empty() {
		a = s.opts.DefaultAuth
	}
	auth, err := a.authenticator(registry)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	platform := opts.Platform
	if platform == "" {
		platform = s.opts.Platform
	}
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: platform %q: %w", ref, platform, err)
	}
	desc, err := remote.Get(r,
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(s.opts.Transport),
		remote.WithUserAgent("berth"),
	)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s from registry %s: %w", ref, registry, err)
	}
	img, err := selectPlatform(desc, *want, ref)
	if err != nil {
		return Image{}, err
	}
	return s.store(ctx, img, storeRequest{ref: r.Name(), names: []string{r.Name()}, progress: opts.Progress})
}

// selectPlatform returns the image for want from a multi-arch index, or
// the image itself, refusing one built for another platform.
func selectPlatform(desc *remote.Descriptor, want v1.Platform, ref string) (v1.Image, error) {
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("pull %s: config: %w", ref, err)
		}
		have := cfg.Platform()
		if have != nil && have.OS != "" && have.Architecture != "" && !have.Satisfies(want) {
			return nil, fmt.Errorf("pull %s: image is for %s, not %s", ref, have, want)
		}
		return img, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: index: %w", ref, err)
	}
	var available []string
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue // attestations and the like
		}
		if m.Platform.Satisfies(want) {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("pull %s (%s): %w", ref, m.Platform, err)
			}
			return img, nil
		}
		available = append(available, m.Platform.String())
	}
	return nil, fmt.Errorf("pull %s: no image for platform %s; available: %s", ref, want, strings.Join(available, ", "))
}

// storeRequest says what to record for an image being stored.
type storeRequest struct {
	ref      string   // for messages and progress
	names    []string // names to point at the image
	progress func(Progress)
}

// store copies img's blobs into the store, unpacks its layers and records
// it under req.names. Callers hold s.gcMu shared.
func (s *Service) store(ctx context.Context, img v1.Image, req storeRequest) (Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("%s: manifest digest: %w", req.ref, err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return Image{}, fmt.Errorf("%s: manifest: %w", req.ref, err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("%s: config digest: %w", req.ref, err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("%s: config: %w", req.ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("%s: config: %w", req.ref, err)
	}
	if err := s.writeBlobBytes(ctx, cfgName.String(), "config of "+req.ref, rawCfg); err != nil {
		return Image{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("%s: layers: %w", req.ref, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return Image{}, fmt.Errorf("%s: manifest has %d layers but the config lists %d diffIDs", req.ref, len(layers), len(cfg.RootFS.DiffIDs))
	}

	var pmu sync.Mutex
	report := func(p Progress) {
		if req.progress == nil {
			return
		}
		pmu.Lock()
		defer pmu.Unlock()
		p.Ref = req.ref
		req.progress(p)
	}
	recs := make([]Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Concurrency)
	for i, l := range layers {
		g.Go(func() error {
			d, err := l.Digest()
			if err != nil {
				return fmt.Errorf("layer %d of %s: digest: %w", i, req.ref, err)
			}
			size, err := l.Size()
			if err != nil {
				return fmt.Errorf("layer %s of %s: size: %w", d, req.ref, err)
			}
			mt, _ := l.MediaType()
			rec := Layer{Digest: d.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), MediaType: string(mt), Size: size}
			what := fmt.Sprintf("layer %s of %s", d, req.ref)
			cached, err := s.writeBlob(gctx, blobWrite{
				digest: rec.Digest, size: size, what: what, open: l.Compressed,
				progress: func(done int64) {
					report(Progress{Layer: rec.Digest, Status: LayerDownloading, Done: done, Size: size})
				},
			})
			if err != nil {
				return err
			}
			status := LayerDownloaded
			if cached {
				status = LayerCached
			}
			report(Progress{Layer: rec.Digest, Status: status, Done: size, Size: size})
			if rec.UnpackedSize, err = s.ensureSnapshot(gctx, rec, what); err != nil {
				return err
			}
			report(Progress{Layer: rec.Digest, Status: LayerUnpacked, Done: size, Size: size})
			recs[i] = rec
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Image{}, err
	}
	if err := s.writeBlobBytes(ctx, digest.String(), "manifest of "+req.ref, rawManifest); err != nil {
		return Image{}, err
	}
	rec := &imageRecord{
		Digest:       digest.String(),
		ConfigDigest: cfgName.String(),
		Config:       imageConfig(cfg),
		Layers:       recs,
		LastUsed:     s.now().UTC(),
	}
	if p := cfg.Platform(); p != nil && p.OS != "" {
		rec.Platform = p.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx.Images[rec.Digest] = rec
	for _, n := range req.names {
		old, had := s.idx.Names[n]
		s.idx.Names[n] = rec.Digest
		// A tag that moved leaves its old image without names: forget it
		// unless a workload uses it (GC frees its data).
		if had && old != rec.Digest && !s.named(old) && len(s.usersOf(old)) == 0 {
			delete(s.idx.Images, old)
		}
	}
	if err := s.saveIndex(); err != nil {
		return Image{}, err
	}
	return s.image(rec), nil
}
