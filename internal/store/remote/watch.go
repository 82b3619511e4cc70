package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// Watch implements store.Store. The first connection is made before it
// returns, so a compacted afterRev fails here.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.Event, error) {
	st, err := s.openWatch(ctx, prefix, afterRev)
	if err != nil {
		return nil, err
	}
	ch := make(chan store.Event, 1024)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		s.watchLoop(ctx, prefix, afterRev, st, ch)
	}()
	return ch, nil
}

// stream is one watch stream: an HTTP response or a watch of an agent
// session.
type stream interface {
	// Next returns the next lines, waiting for them; an error means the
	// stream ended.
	Next() ([]WatchLine, error)
	// Close ends the stream.
	Close()
	// Abort ends a stream that stalled, and what it rides on.
	Abort()
}

// openWatch starts one stream: over the agent session, or as an HTTP
// request whose first (progress) line it reads.
func (s *Store) openWatch(ctx context.Context, prefix string, after int64) (stream, error) {
	f := Frame{Op: "watch", Prefix: prefix, After: after}
	for {
		ss, err := s.session(ctx)
		if err != nil {
			return nil, err
		}
		if ss == nil {
			return s.openHTTPWatch(ctx, prefix, after)
		}
		st := newSessionStream(ctx)
		cctx, cancel := context.WithTimeout(ctx, s.o.RequestTimeout)
		_, err = ss.call(cctx, f, st)
		cancel()
		if errors.Is(err, errSessionGone) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", prefix, err)
		}
		return st, nil
	}
}

// httpStream is a watch as a streamed HTTP response.
type httpStream struct {
	rd     *bufio.Reader
	cancel context.CancelFunc
}

func (h *httpStream) Next() ([]WatchLine, error) {
	for {
		b, err := h.rd.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var l WatchLine
		if json.Unmarshal(b, &l) == nil {
			return []WatchLine{l}, nil
		}
	}
}

func (h *httpStream) Close() { h.cancel() }
func (h *httpStream) Abort() { h.cancel() }

func (s *Store) openHTTPWatch(ctx context.Context, prefix string, after int64) (stream, error) {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	q := url.Values{"prefix": {prefix}, "after": {strconv.FormatInt(after, 10)}}
	timer := time.AfterFunc(s.o.RequestTimeout, cancel)
	resp, err := s.request(sctx, true, http.MethodGet, "/v1/store/watch", q, nil)
	if err != nil {
		timer.Stop()
		stop()
		cancel()
		if s.ctx.Err() != nil {
			return nil, store.ErrClosed
		}
		return nil, err
	}
	context.AfterFunc(sctx, func() { resp.Body.Close() })
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	_, err = rd.ReadBytes('\n')
	timer.Stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", prefix, err)
	}
	return &httpStream{rd: rd, cancel: func() { stop(); cancel() }}, nil
}

func (s *Store) watchLoop(ctx context.Context, prefix string, after int64, st stream, ch chan<- store.Event) {
	backoff := 100 * time.Millisecond
	pos := &streamPos{done: after}
	for {
		ok := s.readStream(ctx, st, pos, ch)
		st.Close()
		if !ok || ctx.Err() != nil || s.ctx.Err() != nil {
			return
		}
		for {
			var err error
			st, err = s.openWatch(ctx, prefix, pos.done)
			if err == nil {
				backoff = 100 * time.Millisecond
				break
			}
			if errors.Is(err, store.ErrCompacted) || errors.Is(err, store.ErrClosed) || ctx.Err() != nil || s.ctx.Err() != nil {
				return
			}
			s.o.Log.Warn("store watch: server unreachable, retrying", "prefix", prefix, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.o.MaxBackoff)
		}
	}
}

// streamPos is how far a watch got, kept across its streams. A stream may
// break between two events of one revision (a Txn of many keys), so it
// resumes after the last revision known complete (done) and skips the
// events of the partly forwarded one (cur) that were forwarded already.
type streamPos struct {
	done int64           // every event up to done was forwarded
	cur  int64           // revision being forwarded (> done), or 0
	keys map[string]bool // keys of cur forwarded
}

// complete records that every event up to rev was forwarded.
func (p *streamPos) complete(rev int64) {
	if p.cur != 0 && p.cur <= rev {
		p.cur, p.keys = 0, nil
	}
	p.done = max(p.done, rev)
}

// seen reports whether ev was forwarded already (a replay of the partly
// forwarded revision) and otherwise records it as forwarded.
func (p *streamPos) seen(ev store.Event) bool {
	rev := ev.KV.ModRev
	switch {
	case rev <= p.done:
		return true
	case rev == p.cur:
		if p.keys[ev.KV.Key] {
			return true
		}
	default: // a later revision: the one before is complete
		p.complete(p.cur)
		p.cur, p.keys = rev, map[string]bool{}
	}
	p.keys[ev.KV.Key] = true
	return false
}

// readStream forwards events until the stream breaks or stalls,
// advancing pos. It returns false if the watch must end.
func (s *Store) readStream(ctx context.Context, st stream, pos *streamPos, ch chan<- store.Event) bool {
	stall := time.AfterFunc(s.o.StallTimeout, st.Abort)
	defer stall.Stop()
	for {
		lines, err := st.Next()
		if err != nil {
			return true
		}
		stall.Reset(s.o.StallTimeout)
		for _, l := range lines {
			switch l.Type {
			case "progress":
				// The server may send one while a revision's events are
				// still on their way (it had forwarded some of them):
				// only the revisions before the progress one are surely
				// complete.
				pos.complete(l.Rev - 1)
				continue
			case "put", "delete":
			default:
				continue
			}
			ev := store.Event{Type: store.EventPut, KV: l.KV.ToKV()}
			if l.Type == "delete" {
				ev.Type = store.EventDelete
			}
			if pos.seen(ev) {
				continue
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return false
			case <-s.ctx.Done():
				return false
			}
		}
	}
}
