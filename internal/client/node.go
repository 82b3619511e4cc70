package client

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// NewNode makes a client that authenticates as a node with the client
// certificate of cfg (mutual TLS, no bearer token): what `berth agent`
// uses for the node endpoints beyond the store.
func NewNode(server string, cfg *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	// A fresh connection per request presents the current certificate:
	// after a renewal the server refuses the previous one.
	tr.DisableKeepAlives = true
	return &Client{base: strings.TrimRight(server, "/"), http: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// NodeSecrets reads secret values as a node: the server answers only
// for secrets that an instance assigned to the node pulls its image with.
// It implements the agent's SecretSource.
type NodeSecrets struct{ C *Client }

// Get returns the values of secret ns/name.
func (s NodeSecrets) Get(ctx context.Context, ns, name string) (map[string]string, error) {
	var out model.SecretRequest
	err := s.C.do(ctx, http.MethodGet, "/v1/cluster/secrets/"+url.PathEscape(name), nsQuery(ns), nil, "", &out)
	return out.Data, err
}
