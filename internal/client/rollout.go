package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/internal/model"
)

// Rollout returns an app's rollout state.
func (c *Client) Rollout(ctx context.Context, ns, name string) (model.RolloutView, error) {
	var out model.RolloutView
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name)+"/rollout", nsQuery(ns), nil, "", &out)
	return out, err
}

// RolloutOptions are the optional arguments of a rollout action.
type RolloutOptions struct {
	// ToRevision is undo's target; 0 means the previous revision.
	ToRevision int64
	// Full makes promote skip every remaining canary step.
	Full bool
}

// RolloutAction asks for pause, resume, promote, abort or undo
// (model.Action*). The deployment controller carries it out shortly
// after; the answer shows it as pending.
func (c *Client) RolloutAction(ctx context.Context, ns, name, action string, o RolloutOptions) (model.RolloutView, error) {
	b, _ := json.Marshal(model.RolloutRequest{ToRevision: o.ToRevision, Full: o.Full})
	var out model.RolloutView
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(name)+"/rollout/"+url.PathEscape(action), nsQuery(ns),
		bytes.NewReader(b), "application/json", &out)
	return out, err
}
