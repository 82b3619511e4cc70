package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/store"
)

// Source feeds the router: the state to route from, then a new full state
// after every relevant change. The store implementation is StoreSource; a
// source over the API can replace it for a router running on another host.
type Source interface {
	// Snapshots sends the current state and then a new one after every
	// change, until ctx ends (then the channel is closed). A slow reader
	// only sees the latest state: older unread snapshots are replaced.
	Snapshots(ctx context.Context) (<-chan table.Snapshot, error)
}

// watchedPrefixes are the store prefixes the route table depends on.
var watchedPrefixes = []string{model.PrefixApps, model.PrefixInstances, model.PrefixNodes, model.PrefixCerts, model.PrefixRollouts}

// StoreSource is a Source over a store.Store: List, then Watch from the
// listed revision, keeping decoded objects in memory. When a watch ends
// (dropped for lagging, history compacted) it lists again.
type StoreSource struct {
	store store.Store
	log   *slog.Logger
}

// NewStoreSource reads routes, instances, nodes and certificates from st.
func NewStoreSource(st store.Store, log *slog.Logger) *StoreSource {
	if log == nil {
		log = slog.Default()
	}
	return &StoreSource{store: st, log: log}
}

// cached is one decoded key.
type cached struct {
	modRev int64
	value  any
}

// Snapshots implements Source.
func (s *StoreSource) Snapshots(ctx context.Context) (<-chan table.Snapshot, error) {
	out := make(chan table.Snapshot, 1)
	cache, rev, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(out)
		for {
			publish(out, snapshot(cache, rev))
			err := s.follow(ctx, cache, &rev, out)
			if ctx.Err() != nil {
				return
			}
			s.log.Debug("router: store watch ended; listing again", "err", err)
			for {
				if cache, rev, err = s.list(ctx); err == nil {
					break
				}
				s.log.Warn("router: cannot read the store; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return out, nil
}

// publish replaces any unread snapshot with s. Only one goroutine sends.
func publish(out chan table.Snapshot, s table.Snapshot) {
	select {
	case <-out:
	default:
	}
	out <- s
}

// list reads every watched prefix. The revision returned is the lowest
// listing revision, so the watch replays anything a later listing may
// already hold; replays are harmless (see apply).
func (s *StoreSource) list(ctx context.Context) (map[string]cached, int64, error) {
	cache := map[string]cached{}
	var rev int64
	for i, p := range watchedPrefixes {
		kvs, r, err := s.store.List(ctx, p)
		if err != nil {
			return nil, 0, err
		}
		if i == 0 || r < rev {
			rev = r
		}
		for _, kv := range kvs {
			s.apply(cache, store.Event{Type: store.EventPut, KV: kv})
		}
	}
	return cache, rev, nil
}

// follow applies watch events until a watch ends, publishing a snapshot
// whenever no further event is immediately pending.
func (s *StoreSource) follow(ctx context.Context, cache map[string]cached, rev *int64, out chan table.Snapshot) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	merged := make(chan store.Event, 256)
	done := make(chan error, len(watchedPrefixes))
	for _, p := range watchedPrefixes {
		ch, err := s.store.Watch(ctx, p, *rev)
		if err != nil {
			return err
		}
		go func() {
			for ev := range ch {
				select {
				case merged <- ev:
				case <-ctx.Done():
					return
				}
			}
			done <- errors.New("watch of " + p + " ended")
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			return err
		case ev := <-merged:
			changed := s.apply(cache, ev)
			if ev.KV.ModRev > *rev {
				*rev = ev.KV.ModRev
			}
			for drained := false; !drained; {
				select {
				case ev := <-merged:
					changed = s.apply(cache, ev) || changed
					if ev.KV.ModRev > *rev {
						*rev = ev.KV.ModRev
					}
				default:
					drained = true
				}
			}
			if changed {
				publish(out, snapshot(cache, *rev))
			}
		}
	}
}

// apply records one event; events older than what is cached are ignored,
// so replays after a re-list change nothing.
func (s *StoreSource) apply(cache map[string]cached, ev store.Event) bool {
	k := ev.KV.Key
	if cur, ok := cache[k]; ok && cur.modRev >= ev.KV.ModRev {
		return false
	}
	if ev.Type == store.EventDelete {
		_, had := cache[k]
		delete(cache, k)
		return had
	}
	v, err := decode(k, ev.KV.Value)
	if err != nil {
		s.log.Warn("router: skipping undecodable store value", "key", k, "err", err)
		return false
	}
	cache[k] = cached{modRev: ev.KV.ModRev, value: v}
	return true
}

func decode(key string, b []byte) (any, error) {
	switch {
	case strings.HasPrefix(key, model.PrefixApps):
		return decodeAs[model.App](b)
	case strings.HasPrefix(key, model.PrefixInstances):
		return decodeAs[model.Instance](b)
	case strings.HasPrefix(key, model.PrefixNodes):
		return decodeAs[model.Node](b)
	case strings.HasPrefix(key, model.PrefixCerts):
		return decodeAs[model.Certificate](b)
	case strings.HasPrefix(key, model.PrefixRollouts):
		return decodeAs[model.Rollout](b)
	}
	return nil, errors.New("not a routing key")
}

func decodeAs[T any](b []byte) (any, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// snapshot copies the cache into a Snapshot, sorted by key.
func snapshot(cache map[string]cached, rev int64) table.Snapshot {
	keys := make([]string, 0, len(cache))
	for k := range cache {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := table.Snapshot{Rev: rev}
	for _, k := range keys {
		switch v := cache[k].value.(type) {
		case model.App:
			s.Apps = append(s.Apps, v)
		case model.Instance:
			s.Instances = append(s.Instances, v)
		case model.Node:
			s.Nodes = append(s.Nodes, v)
		case model.Certificate:
			s.Certs = append(s.Certs, v)
		case model.Rollout:
			s.Rollouts = append(s.Rollouts, v)
		}
	}
	return s
}
