package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-dev/berth/internal/model"
)

// Images lists the images in the server node's image store.
func (c *Client) Images(ctx context.Context) ([]model.Image, error) {
	var out []model.Image
	err := c.do(ctx, http.MethodGet, "/v1/images", nil, nil, "", &out)
	return out, err
}

// PullImage pulls req.Ref into the node's image store, calling progress
// (if not nil) with each progress line, and returns the pulled image.
func (c *Client) PullImage(ctx context.Context, req model.PullRequest, progress func(model.PullProgress)) (model.Image, error) {
	b, _ := json.Marshal(req)
	resp, err := c.send(ctx, http.MethodPost, "/v1/images/pull", nil, bytes.NewReader(b), "application/json")
	if err != nil {
		return model.Image{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var p model.PullProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return model.Image{}, fmt.Errorf("bad progress line from server: %w", err)
		}
		switch {
		case p.Error != "":
			return model.Image{}, errors.New(p.Error)
		case p.Done && p.Image != nil:
			return *p.Image, nil
		case progress != nil:
			progress(p)
		}
	}
	if err := sc.Err(); err != nil {
		return model.Image{}, err
	}
	return model.Image{}, errors.New("the server ended the pull without a result")
}

// RemoveImage deletes an image from the node's image store.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/images", url.Values{"ref": {ref}}, nil, "", nil)
}

// ImportImage uploads a `docker save` tarball or a tar of an OCI layout.
func (c *Client) ImportImage(ctx context.Context, archive io.Reader) ([]model.Image, error) {
	var out []model.Image
	err := c.do(ctx, http.MethodPost, "/v1/images/import", nil, archive, "application/x-tar", &out)
	return out, err
}

// GCImages removes unreferenced image data, then least recently used
// images until the store is at most maxBytes (0: only unreferenced data).
func (c *Client) GCImages(ctx context.Context, maxBytes int64) (model.ImageGCResult, error) {
	var out model.ImageGCResult
	q := url.Values{}
	if maxBytes > 0 {
		q.Set("maxBytes", strconv.FormatInt(maxBytes, 10))
	}
	err := c.do(ctx, http.MethodPost, "/v1/images/gc", q, nil, "", &out)
	return out, err
}
