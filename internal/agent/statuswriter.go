package agent

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// maxStatusBatch bounds the status changes written in one Txn.
const maxStatusBatch = 128

// statusWriter writes the status changes of a node's instances, several
// in one Txn when they come together (a node starting its instances at
// once): one request to the server instead of one per instance. The
// first writer to find no batch in flight writes everything queued
// meanwhile, as the store's committer does. A batch that fails as a
// whole (one instance changed meanwhile, say) is written again one
// instance at a time, each with its own context, so batching never
// changes an outcome.
type statusWriter struct {
	st store.Store

	mu    sync.Mutex
	queue []*statusReq
	busy  bool
}

// statusReq is one instance's change waiting to be written.
type statusReq struct {
	ctx    context.Context
	key    string
	known  store.Object[model.Instance]
	mutate func(*model.Instance) error
	extra  []store.Op
	done   chan statusRes // buffered
}

type statusRes struct {
	obj store.Object[model.Instance]
	err error
}

// update is store.UpdateKnown for one instance, batched with others.
func (w *statusWriter) update(ctx context.Context, key string, known store.Object[model.Instance], mutate func(*model.Instance) error, extra ...store.Op) (store.Object[model.Instance], error) {
	req := &statusReq{ctx: ctx, key: key, known: known, mutate: mutate, extra: extra, done: make(chan statusRes, 1)}
	w.mu.Lock()
	w.queue = append(w.queue, req)
	if !w.busy {
		w.busy = true
		for len(w.queue) > 0 {
			n := min(len(w.queue), maxStatusBatch)
			batch := w.queue[:n:n]
			w.queue = w.queue[n:]
			w.mu.Unlock()
			w.write(ctx, batch)
			w.mu.Lock()
		}
		w.busy = false
	}
	w.mu.Unlock()
	res := <-req.done
	return res.obj, res.err
}

// write commits batch in one Txn guarded by each instance's ModRev, or
// each on its own when that is not possible or fails.
func (w *statusWriter) write(ctx context.Context, batch []*statusReq) {
	if len(batch) > 1 && w.writeTogether(ctx, batch) {
		return
	}
	for _, r := range batch {
		known := r.known
		o, err := store.UpdateKnown(r.ctx, w.st, r.key, &known, r.mutate, r.extra...)
		r.done <- statusRes{obj: o, err: err}
	}
}

// writeTogether commits every change of batch in one Txn and answers
// them; false (nothing answered) when one cannot be part of it or the
// Txn fails.
func (w *statusWriter) writeTogether(ctx context.Context, batch []*statusReq) bool {
	var t store.Txn
	values := make([]model.Instance, len(batch))
	for i, r := range batch {
		values[i] = r.known.Value
		if r.known.ModRev == 0 || r.mutate(&values[i]) != nil {
			return false
		}
		b, err := json.Marshal(values[i])
		if err != nil {
			return false
		}
		t.Compares = append(t.Compares, store.Compare{Key: r.key, ModRev: r.known.ModRev})
		t.Ops = append(append(t.Ops, store.Put(r.key, b)), r.extra...)
	}
	rev, err := w.st.Txn(ctx, t)
	if err != nil {
		return false
	}
	for i, r := range batch {
		r.done <- statusRes{obj: store.Object[model.Instance]{Value: values[i], ModRev: rev}}
	}
	return true
}
