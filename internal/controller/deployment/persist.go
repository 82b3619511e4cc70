package deployment

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// rolloutObjects lists the stored rollouts and pending requests by
// "ns/app".
func (c *Controller) rolloutObjects(ctx context.Context) (map[string]*store.Object[model.Rollout], map[string]*store.Object[model.RolloutRequest], error) {
	ros, _, err := store.ListJSON[model.Rollout](ctx, c.o.Store, model.PrefixRollouts)
	if err != nil {
		return nil, nil, err
	}
	reqs, _, err := store.ListJSON[model.RolloutRequest](ctx, c.o.Store, model.PrefixRolloutRequests)
	if err != nil {
		return nil, nil, err
	}
	rm := map[string]*store.Object[model.Rollout]{}
	for i := range ros {
		rm[ros[i].Value.Namespace+"/"+ros[i].Value.App] = &ros[i]
	}
	qm := map[string]*store.Object[model.RolloutRequest]{}
	for i := range reqs {
		qm[reqs[i].Value.Namespace+"/"+reqs[i].Value.App] = &reqs[i]
	}
	return rm, qm, nil
}

// rolloutChanged reports whether next differs from the stored rollout
// other than in UpdatedAt.
func rolloutChanged(old *store.Object[model.Rollout], next *model.Rollout) bool {
	if old == nil {
		return true
	}
	a, b := old.Value, *next
	a.UpdatedAt = b.UpdatedAt
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) != string(jb)
}

// rolloutOps are the compares and writes that store d's rollout state and
// consume the handled request.
func (a *appState) rolloutOps(d Decision) ([]store.Compare, []store.Op) {
	app := &a.app.Value
	var cmps []store.Compare
	var ops []store.Op
	if d.Rollout != nil && rolloutChanged(a.rollout, d.Rollout) {
		ro := *d.Rollout
		ro.UpdatedAt = a.c.o.Now()
		var rev int64
		if a.rollout != nil {
			rev = a.rollout.ModRev
		}
		b, _ := json.Marshal(ro)
		cmps = append(cmps, store.Compare{Key: model.RolloutKey(app.Namespace, app.Name), ModRev: rev})
		ops = append(ops, store.Put(model.RolloutKey(app.Namespace, app.Name), b))
	}
	if d.RequestDone && a.request != nil {
		key := model.RolloutRequestKey(app.Namespace, app.Name)
		cmps = append(cmps, store.Compare{Key: key, ModRev: a.request.ModRev})
		ops = append(ops, store.Delete(key))
	}
	return cmps, ops
}

// saveRollout stores the rollout state and consumes the request, then
// records the rollout's events.
func (a *appState) saveRollout(ctx context.Context, d Decision) error {
	cmps, ops := a.rolloutOps(d)
	if len(ops) > 0 {
		if _, err := a.c.o.Store.Txn(ctx, store.Txn{Compares: cmps, Ops: ops}); err != nil {
			return err
		}
	}
	a.events(ctx, d)
	return nil
}

func (a *appState) events(ctx context.Context, d Decision) {
	app := &a.app.Value
	for _, e := range d.Events {
		typ := model.EventNormal
		if e.Warning {
			typ = model.EventWarning
		}
		a.c.o.Events.Record(ctx, model.Event{Type: typ, Reason: e.Reason, Namespace: app.Namespace, App: app.Name, Message: e.Message})
	}
}

// revert returns the app to revision d.Revert.To: its template, with the
// app's instance count, routes and rollout settings. The app, the rollout
// and the consumed request are written in one transaction, so a restart
// never sees one without the other.
func (a *appState) revert(ctx context.Context, d Decision) error {
	app := a.app.Value
	rev, err := store.GetJSON[model.Revision](ctx, a.c.o.Store, model.RevisionKey(app.Namespace, app.Name, d.Revert.To))
	if err != nil {
		return fmt.Errorf("rollback of %s/%s to revision %d: %w", app.Namespace, app.Name, d.Revert.To, err)
	}
	app.Spec = app.Spec.WithTemplate(rev.Value.Spec)
	app.LatestRevision = max(app.LatestRevision, app.Revision)
	app.Revision = d.Revert.To
	app.UpdatedAt = a.c.o.Now()
	b, _ := json.Marshal(app)
	cmps, ops := a.rolloutOps(d)
	key := model.AppKey(app.Namespace, app.Name)
	cmps = append(cmps, store.Compare{Key: key, ModRev: a.app.ModRev})
	ops = append(ops, store.Put(key, b))
	if _, err := a.c.o.Store.Txn(ctx, store.Txn{Compares: cmps, Ops: ops}); err != nil {
		return err
	}
	a.events(ctx, d)
	return nil
}

// stats asks Metrics for the figures of a running canary's stable and
// canary revisions over its analysis window; nil when not needed or not
// available.
func (a *appState) stats() map[int64]model.RevisionStats {
	m, app, ro := a.c.o.Metrics, &a.app.Value, a.rollout
	if m == nil || ro == nil || !ro.Value.Running() || ro.Value.Strategy != model.RolloutCanary || ro.Value.To != app.Revision {
		return nil
	}
	an := app.Spec.EffectiveRollout().Canary.Analysis
	if an == nil {
		return nil
	}
	w := an.Window.Duration
	return map[int64]model.RevisionStats{
		ro.Value.From: m.RevisionStats(app.Namespace, app.Name, ro.Value.From, w),
		ro.Value.To:   m.RevisionStats(app.Namespace, app.Name, ro.Value.To, w),
	}
}

// stableCreated are k new instances of revision rev (the stable set of a
// blue/green or canary rollout), with that revision's resources.
func (a *appState) stableCreated(ctx context.Context, rev int64, k int) ([]created, error) {
	app := &a.app.Value
	r, err := store.GetJSON[model.Revision](ctx, a.c.o.Store, model.RevisionKey(app.Namespace, app.Name, rev))
	if err != nil {
		return nil, fmt.Errorf("replace stable instances of %s/%s: revision %d: %w", app.Namespace, app.Name, rev, err)
	}
	out := make([]created, k)
	for i := range out {
		out[i] = created{in: a.newInstance(rev, r.Value.Spec.Resources, ""),
			msg: fmt.Sprintf("instance created for stable revision %d (the rollout to %d keeps the stable set whole)", rev, app.Revision)}
	}
	return out, nil
}
