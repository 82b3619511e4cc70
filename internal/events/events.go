// Package events records and reads the events that explain what berth did
// and why (scheduled, started, exited, failed scheduling ...).
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Recorder writes events to the store. Failures to record are logged, never
// returned: an event is an explanation, not part of the state.
type Recorder struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	seq   atomic.Int64
}

// NewRecorder makes a Recorder; log may be nil.
func NewRecorder(s store.Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{store: s, log: log, now: time.Now}
}

// Record stores e, filling Time. Events get unique keys ordered by time.
func (r *Recorder) Record(ctx context.Context, e model.Event) {
	op, ok := r.Op(e)
	if !ok {
		return
	}
	if _, err := r.store.Txn(ctx, store.Txn{Ops: []store.Op{op}}); err != nil && ctx.Err() == nil {
		r.log.Warn("record event", "reason", e.Reason, "err", err)
	}
}

// Op is the write that records e (Time and Type filled as by Record), for
// a caller that commits events in its own Txn: many writes, one sync.
func (r *Recorder) Op(e model.Event) (store.Op, bool) {
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Type == "" {
		e.Type = model.EventNormal
	}
	b, err := json.Marshal(e)
	if err != nil {
		return store.Op{}, false
	}
	r.log.Debug("event", "type", e.Type, "reason", e.Reason, "app", e.App, "instance", e.Instance, "msg", e.Message)
	key := fmt.Sprintf("%s%020d-%06d", model.PrefixEvents, e.Time.UnixNano(), r.seq.Add(1)%1000000)
	return store.Put(key, b), true
}

// InstanceOp is Op of a Normal event about an instance.
func (r *Recorder) InstanceOp(inst *model.Instance, reason, format string, args ...any) (store.Op, bool) {
	return r.Op(instanceEvent(inst, model.EventNormal, reason, fmt.Sprintf(format, args...)))
}

// Normal records a Normal event about an instance.
func (r *Recorder) Normal(ctx context.Context, inst *model.Instance, reason, format string, args ...any) {
	r.Record(ctx, instanceEvent(inst, model.EventNormal, reason, fmt.Sprintf(format, args...)))
}

// Warning records a Warning event about an instance.
func (r *Recorder) Warning(ctx context.Context, inst *model.Instance, reason, format string, args ...any) {
	r.Record(ctx, instanceEvent(inst, model.EventWarning, reason, fmt.Sprintf(format, args...)))
}

func instanceEvent(inst *model.Instance, typ, reason, msg string) model.Event {
	return model.Event{Type: typ, Reason: reason, Message: msg,
		Namespace: inst.Namespace, App: inst.App, Instance: inst.ID, Node: inst.Node}
}

// Filter selects events.
type Filter struct {
	Namespace string
	App       string
	Instance  string
	Node      string
}

// Match reports whether e passes f; empty fields match anything.
func (f Filter) Match(e *model.Event) bool {
	return (f.Namespace == "" || f.Namespace == e.Namespace) &&
		(f.App == "" || f.App == e.App) &&
		(f.Instance == "" || f.Instance == e.Instance) &&
		(f.Node == "" || f.Node == e.Node)
}

// Decode turns a stored event into a model.Event with Seq set.
func Decode(kv store.KV) (model.Event, error) {
	var e model.Event
	err := json.Unmarshal(kv.Value, &e)
	e.Seq = kv.ModRev
	return e, err
}

// List returns the events matching f, oldest first, at most limit (0: all)
// of the newest, and the store revision to watch from.
func List(ctx context.Context, s store.Store, f Filter, limit int) ([]model.Event, int64, error) {
	kvs, rev, err := s.List(ctx, model.PrefixEvents)
	if err != nil {
		return nil, 0, err
	}
	var out []model.Event
	for _, kv := range kvs {
		e, err := Decode(kv)
		if err == nil && f.Match(&e) {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, rev, nil
}

// Trim deletes the oldest events so that at most keep remain.
func Trim(ctx context.Context, s store.Store, keep int) error {
	kvs, _, err := s.List(ctx, model.PrefixEvents)
	if err != nil || len(kvs) <= keep {
		return err
	}
	var ops []store.Op
	for _, kv := range kvs[:len(kvs)-keep] {
		ops = append(ops, store.Delete(kv.Key))
		if len(ops) == 500 {
			if _, err := s.Txn(ctx, store.Txn{Ops: ops}); err != nil {
				return err
			}
			ops = nil
		}
	}
	if len(ops) > 0 {
		_, err = s.Txn(ctx, store.Txn{Ops: ops})
	}
	return err
}
