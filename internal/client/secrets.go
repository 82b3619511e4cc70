package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/internal/model"
)

// PutSecret creates or replaces secret ns/name with data.
func (c *Client) PutSecret(ctx context.Context, ns, name string, data map[string]string) (model.SecretInfo, error) {
	b, _ := json.Marshal(model.SecretRequest{Data: data})
	var out model.SecretInfo
	err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(name), nsQuery(ns), bytes.NewReader(b), "application/json", &out)
	return out, err
}

// Secrets lists the secrets of ns (names and keys, never values).
func (c *Client) Secrets(ctx context.Context, ns string) ([]model.SecretInfo, error) {
	var out []model.SecretInfo
	err := c.do(ctx, http.MethodGet, "/v1/secrets", nsQuery(ns), nil, "", &out)
	return out, err
}

// DeleteSecret removes secret ns/name.
func (c *Client) DeleteSecret(ctx context.Context, ns, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(name), nsQuery(ns), nil, "", nil)
}
