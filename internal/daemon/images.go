package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/model"
)

// imageAPI serves /v1/images from the local image store.
type imageAPI struct{ s *image.Service }

var _ api.ImageStore = imageAPI{}

func (a imageAPI) view(im image.Image) model.Image {
	return model.Image{Names: im.Names, Digest: im.Digest, Platform: im.Platform, Size: im.Size,
		Layers: len(im.Layers), InUse: len(a.s.Users(im.Digest)), LastUsed: im.LastUsed}
}

func (a imageAPI) List(ctx context.Context) ([]model.Image, error) {
	list, err := a.s.List()
	if err != nil {
		return nil, err
	}
	out := make([]model.Image, 0, len(list))
	for _, im := range list {
		out = append(out, a.view(im))
	}
	return out, nil
}

func (a imageAPI) Pull(ctx context.Context, req model.PullRequest, progress func(model.PullProgress)) (model.Image, error) {
	opts := image.PullOptions{Platform: req.Platform, Auth: image.Auth{Username: req.Username, Password: req.Password},
		Progress: func(p image.Progress) {
			progress(model.PullProgress{Layer: p.Layer, Status: string(p.Status), Complete: p.Done, Total: p.Size})
		}}
	im, err := a.s.Pull(ctx, req.Ref, opts)
	if err != nil {
		return model.Image{}, err
	}
	return a.view(im), nil
}

func (a imageAPI) Remove(ctx context.Context, ref string) error {
	err := a.s.Remove(ref)
	switch {
	case errors.Is(err, image.ErrNotFound):
		return fmt.Errorf("%w: %v", api.ErrImageNotFound, err)
	case errors.Is(err, image.ErrInUse):
		return fmt.Errorf("%w: %v", api.ErrImageInUse, err)
	}
	return err
}

// Import spools the archive to a temp file: the store reads it by path
// (a docker save tarball is read twice, manifest first).
func (a imageAPI) Import(ctx context.Context, r io.Reader) ([]model.Image, error) {
	f, err := os.CreateTemp(a.s.Dir(), ".import-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("receive archive: %w", err)
	}
	imgs, err := a.s.Import(ctx, f.Name())
	if err != nil {
		return nil, err
	}
	out := make([]model.Image, 0, len(imgs))
	for _, im := range imgs {
		out = append(out, a.view(im))
	}
	return out, nil
}

func (a imageAPI) GC(ctx context.Context, maxBytes int64) (model.ImageGCResult, error) {
	res, err := a.s.GC(ctx, maxBytes)
	if err != nil {
		return model.ImageGCResult{}, err
	}
	return model.ImageGCResult{FreedBytes: res.FreedBytes, Removed: res.Evicted}, nil
}
