// Package client is the Go client of berth's /v1 API, used by the CLI, the
// benchmarks and the end-to-end tests.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// Client talks to one berth server.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New makes a client for server (e.g. "http://127.0.0.1:7070").
func New(server, token string) *Client {
	return &Client{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{}}
}

// NewTLS makes a client for an https server whose certificate is signed
// by the CA in caPEM (the cluster CA `berth server` made).
func NewTLS(server, token string, caPEM []byte) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA of the CLI context holds no PEM certificate; copy ca.crt from the server's data dir (pki/)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &Client{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{Transport: tr}}, nil
}

// Error is a non-2xx answer.
type Error struct {
	Status int
	model.APIError
}

// Error is the server's message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Message == "" {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	}
	return b.String()
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Status == http.StatusNotFound
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) error {
	resp, err := c.send(ctx, method, path, q, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send returns the response of a 2xx answer or an *Error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach berth at %s: %w (is `berth up` running? see --server)", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e.APIError) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil, e
}

func nsQuery(ns string) url.Values {
	q := url.Values{}
	if ns != "" {
		q.Set("namespace", ns)
	}
	return q
}

// Apply sends a spec (YAML or JSON bytes). A non-empty ns applies it to
// that namespace; a spec naming a different one is refused.
func (c *Client) Apply(ctx context.Context, ns string, spec []byte) (model.ApplyResult, error) {
	var res model.ApplyResult
	err := c.do(ctx, http.MethodPost, "/v1/apps", nsQuery(ns), bytes.NewReader(spec), "application/yaml", &res)
	return res, err
}

// ListApps lists the apps of ns; all=true lists every namespace.
func (c *Client) ListApps(ctx context.Context, ns string, all bool) ([]model.AppView, error) {
	q := nsQuery(ns)
	if all {
		q.Set("allNamespaces", "true")
	}
	var out []model.AppView
	err := c.do(ctx, http.MethodGet, "/v1/apps", q, nil, "", &out)
	return out, err
}

// GetApp returns one app with its status.
func (c *Client) GetApp(ctx context.Context, ns, name string) (model.AppView, error) {
	var out model.AppView
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), nsQuery(ns), nil, "", &out)
	return out, err
}

// DeleteApp asks berth to stop and remove an app.
func (c *Client) DeleteApp(ctx context.Context, ns, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(name), nsQuery(ns), nil, "", nil)
}

// Scale sets an app's instance count.
func (c *Client) Scale(ctx context.Context, ns, name string, n int) (model.App, error) {
	b, _ := json.Marshal(model.ScaleRequest{Instances: n})
	var out model.App
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(name)+"/scale", nsQuery(ns), bytes.NewReader(b), "application/json", &out)
	return out, err
}

// Revisions lists an app's revisions.
func (c *Client) Revisions(ctx context.Context, ns, name string) ([]model.Revision, error) {
	var out []model.Revision
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name)+"/revisions", nsQuery(ns), nil, "", &out)
	return out, err
}

// Instances lists an app's instances.
func (c *Client) Instances(ctx context.Context, ns, app string) ([]model.Instance, error) {
	var out []model.Instance
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/instances", nsQuery(ns), nil, "", &out)
	return out, err
}

// Nodes lists nodes.
func (c *Client) Nodes(ctx context.Context) ([]model.Node, error) {
	var out []model.Node
	err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil, "", &out)
	return out, err
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (model.VersionInfo, error) {
	var out model.VersionInfo
	err := c.do(ctx, http.MethodGet, "/v1/version", nil, nil, "", &out)
	return out, err
}

// EventFilter selects events.
type EventFilter struct {
	Namespace string
	All       bool
	App       string
	Instance  string
	Limit     int
}

func (f EventFilter) query() url.Values {
	q := nsQuery(f.Namespace)
	if f.All {
		q.Set("allNamespaces", "true")
	}
	if f.App != "" {
		q.Set("app", f.App)
	}
	if f.Instance != "" {
		q.Set("instance", f.Instance)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// Events lists events.
func (c *Client) Events(ctx context.Context, f EventFilter) ([]model.Event, error) {
	var out []model.Event
	err := c.do(ctx, http.MethodGet, "/v1/events", f.query(), nil, "", &out)
	return out, err
}

// FollowEvents streams events to fn until ctx ends or fn returns an error.
func (c *Client) FollowEvents(ctx context.Context, f EventFilter, fn func(model.Event) error) error {
	q := f.query()
	q.Set("follow", "true")
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var e model.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("bad event from server: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// LogOptions select logs.
type LogOptions struct {
	Instance string
	Follow   bool
	Tail     int
}

// Logs streams an app's logs.
func (c *Client) Logs(ctx context.Context, ns, app string, o LogOptions) (io.ReadCloser, error) {
	q := nsQuery(ns)
	if o.Instance != "" {
		q.Set("instance", o.Instance)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/logs", q, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ErrFailing is returned by WaitConverged when the app's status says it
// is failing (an instance keeps failing, or ended for good): waiting
// longer would not help. The returned view's Status.Message says why.
var ErrFailing = errors.New("app is failing")

// WaitOptions tune WaitConverged.
type WaitOptions struct {
	// Poll interval; default 250ms.
	Poll time.Duration
	// Progress is called with each status that differs from the last.
	Progress func(model.AppView)
	// Gone waits for the app to disappear instead of converging.
	Gone bool
}

// WaitConverged polls an app until its status is converged (or, with
// Gone, until it no longer exists), ctx ends, or the app fails for good
// (ErrFailing).
func (c *Client) WaitConverged(ctx context.Context, ns, name string, o WaitOptions) (model.AppView, error) {
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	var last model.AppView
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	for {
		v, err := c.GetApp(ctx, ns, name)
		switch {
		case o.Gone && IsNotFound(err):
			return last, nil
		case err != nil:
			return last, err
		}
		if o.Progress != nil && v.Status != last.Status {
			o.Progress(v)
		}
		last = v
		if !o.Gone && v.Status.Converged {
			return v, nil
		}
		if !o.Gone && v.Status.Failing {
			return v, ErrFailing
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-t.C:
		}
	}
}
