package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/internal/model"
)

// PutCert stores (or replaces) TLS certificate name for the router; the
// answer leaves the key out.
func (c *Client) PutCert(ctx context.Context, name, certPEM, keyPEM string) (model.Certificate, error) {
	b, _ := json.Marshal(map[string]string{"certPEM": certPEM, "keyPEM": keyPEM})
	var out model.Certificate
	err := c.do(ctx, http.MethodPut, "/v1/certs/"+url.PathEscape(name), nil, bytes.NewReader(b), "application/json", &out)
	return out, err
}

// Certs lists the stored certificates without their keys.
func (c *Client) Certs(ctx context.Context) ([]model.Certificate, error) {
	var out []model.Certificate
	err := c.do(ctx, http.MethodGet, "/v1/certs", nil, nil, "", &out)
	return out, err
}

// DeleteCert removes certificate name.
func (c *Client) DeleteCert(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/certs/"+url.PathEscape(name), nil, nil, "", nil)
}
