package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Rollout returns the app's rollout (nil when it never rolled out), its
// current revision and a request not carried out yet.
func (s *Service) Rollout(ctx context.Context, ns, name string) (model.RolloutView, error) {
	app, err := store.GetJSON[model.App](ctx, s.Store, model.AppKey(ns, name))
	if err != nil {
		return model.RolloutView{}, notFound(err, ns, name)
	}
	v := model.RolloutView{Revision: app.Value.Revision}
	ro, err := store.GetJSON[model.Rollout](ctx, s.Store, model.RolloutKey(ns, name))
	switch {
	case err == nil:
		v.Rollout = &ro.Value
	case !errors.Is(err, store.ErrNotFound):
		return v, err
	}
	req, err := store.GetJSON[model.RolloutRequest](ctx, s.Store, model.RolloutRequestKey(ns, name))
	switch {
	case err == nil:
		v.Pending = &req.Value
	case !errors.Is(err, store.ErrNotFound):
		return v, err
	}
	return v, nil
}

func invalidField(field, format string, args ...any) error {
	return &model.ValidationError{Errors: []model.FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// RequestRollout records a pause, resume, promote, abort or undo for the
// deployment controller to carry out. Actions that need a running rollout
// (pause, resume, promote, abort) are refused with a conflict when there
// is none, and nothing is stored. Undo without ToRevision goes back to
// the revision the last rollout started from (else the highest older
// one); the target must exist.
func (s *Service) RequestRollout(ctx context.Context, ns, name string, req model.RolloutRequest) (model.RolloutView, error) {
	key := model.AppKey(ns, name)
	app, err := store.GetJSON[model.App](ctx, s.Store, key)
	if err != nil {
		return model.RolloutView{}, notFound(err, ns, name)
	}
	if app.Value.Deleting {
		return model.RolloutView{}, fmt.Errorf("%w: app %s/%s is being deleted", errConflictPlain, ns, name)
	}
	if app.Value.Spec.IsSystem() || app.Value.Spec.IsBatch() {
		return model.RolloutView{}, invalidField("action", "only service apps roll out; %s is a %s app", name, app.Value.Spec.Type)
	}
	view, err := s.Rollout(ctx, ns, name)
	if err != nil {
		return view, err
	}
	ro := view.Rollout
	running := ro != nil && ro.Running()
	none := func(what string) error {
		last := "the app never rolled out"
		if ro != nil {
			last = fmt.Sprintf("the last rollout (to revision %d) is %s", ro.To, ro.State)
		}
		return fmt.Errorf("%w: no rollout of %s is in progress, nothing to %s (%s)", errConflictPlain, name, what, last)
	}
	switch req.Action {
	case model.ActionPause, model.ActionPromote, model.ActionAbort:
		if !running {
			return view, none(req.Action)
		}
		if req.Action == model.ActionPause && ro.Paused {
			return view, fmt.Errorf("%w: the rollout of %s is already paused; `berth rollout resume %s` goes on", errConflictPlain, name, name)
		}
	case model.ActionResume:
		if !running || ro.State != model.RolloutPaused {
			return view, fmt.Errorf("%w: no paused rollout of %s to resume", errConflictPlain, name)
		}
	case model.ActionUndo:
		to, err := s.undoTarget(ctx, &app.Value, ro, req.ToRevision)
		if err != nil {
			return view, err
		}
		req.ToRevision = to
	default:
		return view, invalidField("action", "must be pause, resume, promote, abort or undo, got %q", req.Action)
	}
	if view.Pending != nil {
		return view, fmt.Errorf("%w: a %s request for %s is still being carried out; retry in a moment", errConflictPlain, view.Pending.Action, name)
	}
	req.Namespace, req.App, req.At = ns, name, s.now()
	b, _ := json.Marshal(req)
	rkey := model.RolloutRequestKey(ns, name)
	_, err = s.Store.Txn(ctx, store.Txn{
		Compares: []store.Compare{{Key: key, ModRev: app.ModRev}, {Key: rkey, ModRev: 0}},
		Ops:      []store.Op{store.Put(rkey, b)}})
	if errors.Is(err, store.ErrConflict) {
		return view, fmt.Errorf("%w: the app or its rollout changed concurrently; retry", errConflictPlain)
	}
	if err != nil {
		return view, err
	}
	view.Pending = &req
	return view, nil
}

// undoTarget resolves and checks the revision undo returns to.
func (s *Service) undoTarget(ctx context.Context, app *model.App, ro *model.Rollout, to int64) (int64, error) {
	if to == 0 {
		switch {
		case ro != nil && ro.Running() && ro.From > 0:
			to = ro.From
		case ro != nil && ro.State == model.RolloutSucceeded && ro.To == app.Revision && ro.From > 0:
			to = ro.From
		default:
			revs, err := s.Revisions(ctx, app.Namespace, app.Name)
			if err != nil {
				return 0, err
			}
			for _, r := range revs {
				if r.Number < app.Revision && r.Number > to {
					to = r.Number
				}
			}
		}
		if to == 0 {
			return 0, invalidField("toRevision", "app %s has no revision before %d to go back to", app.Name, app.Revision)
		}
	}
	if to == app.Revision {
		return 0, fmt.Errorf("%w: app %s already runs revision %d", errConflictPlain, app.Name, to)
	}
	if _, err := s.Store.Get(ctx, model.RevisionKey(app.Namespace, app.Name, to)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, invalidField("toRevision", "app %s has no revision %d (see `berth rollout history %s`)", app.Name, to, app.Name)
		}
		return 0, err
	}
	return to, nil
}
