package clusterview

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/router/table"
)

// Options configure a Source.
type Options struct {
	// Server is the API's base URL (https://host:7070).
	Server string
	// TLS is the client TLS configuration (the node's certificate). A new
	// connection is opened per stream, so a renewed certificate is used
	// from the next reconnect on.
	TLS *tls.Config
	// Token is a bearer token (the admin's); nodes use certificates.
	Token string
	// StallTimeout ends a stream that carried nothing, not even a
	// progress line, for this long (default 20s); it is then resumed.
	StallTimeout time.Duration
	// MaxBackoff caps the wait between reconnects (default 5s).
	MaxBackoff time.Duration
	Log        *slog.Logger
}

// Source watches the cluster view over the API. It implements the
// router's and node DNS's Source: Snapshots sends a snapshot for every
// view the server streams. While the server is unreachable it retries with
// exponential backoff and sends nothing, so readers keep the last view;
// it resumes with the last revision it has, and the server sends a new
// snapshot only if something changed meanwhile.
type Source struct {
	o    Options
	http *http.Client
}

// New makes a Source; it does not contact the server.
func New(o Options) *Source {
	if o.StallTimeout <= 0 {
		o.StallTimeout = 20 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Server = strings.TrimRight(o.Server, "/")
	tr := &http.Transport{TLSClientConfig: o.TLS, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second, DisableKeepAlives: true, ResponseHeaderTimeout: 15 * time.Second}
	return &Source{o: o, http: &http.Client{Transport: tr}}
}

// Snapshots implements the router's Source. The channel holds at most
// the latest unread snapshot and is closed when ctx ends.
func (s *Source) Snapshots(ctx context.Context) (<-chan table.Snapshot, error) {
	out := make(chan table.Snapshot, 1)
	go func() {
		defer close(out)
		var last int64
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			got, err := s.stream(ctx, &last, out)
			if ctx.Err() != nil {
				return
			}
			if got {
				backoff = 100 * time.Millisecond
			}
			s.o.Log.Warn("cluster view: stream ended; reconnecting", "err", err, "in", backoff, "rev", last)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.o.MaxBackoff)
		}
	}()
	return out, nil
}

// stream reads one watch stream until it breaks or stalls, publishing
// every snapshot and advancing *last. got reports whether any line came.
func (s *Source) stream(ctx context.Context, last *int64, out chan table.Snapshot) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		s.o.Server+"/v1/cluster/view?watch=true&after="+strconv.FormatInt(*last, 10), nil)
	if err != nil {
		return false, err
	}
	if s.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.Token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("GET /v1/cluster/view: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	stall := time.AfterFunc(s.o.StallTimeout, cancel)
	defer stall.Stop()
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		b, err := rd.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil && got {
				return got, fmt.Errorf("no line for %s", s.o.StallTimeout)
			}
			return got, err
		}
		stall.Reset(s.o.StallTimeout)
		got = true
		var l Line
		if err := json.Unmarshal(b, &l); err != nil {
			return got, fmt.Errorf("cluster view line: %w", err)
		}
		if l.Type != LineSnapshot || l.View == nil {
			continue
		}
		*last = l.View.Rev
		publish(out, l.View.Snapshot())
	}
}

// publish replaces any unread snapshot with snap. Only one goroutine
// sends.
func publish(out chan table.Snapshot, snap table.Snapshot) {
	select {
	case <-out:
	default:
	}
	out <- snap
}
