package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/internal/model"
)

// Endpoints returns what node DNS serves for an app: its names, ready
// addresses and SRV records.
func (c *Client) Endpoints(ctx context.Context, ns, app string) (model.Endpoints, error) {
	var out model.Endpoints
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/endpoints", nsQuery(ns), nil, "", &out)
	return out, err
}
