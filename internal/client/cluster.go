package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/internal/model"
)

// CreateToken makes a join token valid for ttl ("1h"; "" never expires).
func (c *Client) CreateToken(ctx context.Context, ttl, description string) (model.CreatedJoinToken, error) {
	var out model.CreatedJoinToken
	b, _ := json.Marshal(map[string]string{"ttl": ttl, "description": description})
	err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, bytes.NewReader(b), "application/json", &out)
	return out, err
}

// Tokens lists join tokens (without secrets).
func (c *Client) Tokens(ctx context.Context) ([]model.JoinToken, error) {
	var out []model.JoinToken
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, "", &out)
	return out, err
}

// RevokeToken revokes a join token by ID.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, "", nil)
}

// NodeAction is cordon, uncordon or drain.
func (c *Client) NodeAction(ctx context.Context, name, action string) (model.Node, error) {
	var out model.Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/"+action, nil, nil, "", &out)
	return out, err
}

// LabelNode sets node labels; an empty value removes the key.
func (c *Client) LabelNode(ctx context.Context, name string, labels map[string]string) (model.Node, error) {
	var out model.Node
	b, _ := json.Marshal(map[string]any{"labels": labels})
	err := c.do(ctx, http.MethodPatch, "/v1/nodes/"+url.PathEscape(name)+"/labels", nil, bytes.NewReader(b), "application/json", &out)
	return out, err
}

// RemoveNode deletes a node and revokes its agent's certificate.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(name), nil, nil, "", nil)
}

// Node returns one node.
func (c *Client) Node(ctx context.Context, name string) (model.Node, error) {
	var out model.Node
	err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), nil, nil, "", &out)
	return out, err
}
