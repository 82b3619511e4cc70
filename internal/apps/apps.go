// Package apps is the write path of desired state: apply, scale and delete
// apps, each as one compare-and-swap on the store. It also derives an app's
// status from its instances. The API calls it; it never talks to agents.
package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// ErrNotFound is returned for an app that does not exist.
var ErrNotFound = errors.New("app not found")

// ConflictError says a concurrent write to the same app won.
type ConflictError struct {
	// Revision is the app's current revision.
	Revision int64
}

// Error says who won and what to do.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("app was changed concurrently (now at revision %d); re-read and retry", e.Revision)
}

// Service applies changes to apps.
type Service struct {
	Store store.Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Apply validates spec and stores it. An identical spec is a no-op; a
// change of instance count, routes or rollout settings alone updates the
// app without a new revision (nothing restarts); any other change makes
// revision LatestRevision+1. Invalid specs return
// *model.ValidationError and store nothing.
func (s *Service) Apply(ctx context.Context, spec model.AppSpec) (model.ApplyResult, error) {
	spec.Normalize()
	spec.NormalizeRoutes()
	if verr := spec.Validate(); verr != nil {
		return model.ApplyResult{}, verr
	}
	for try := 0; ; try++ {
		res, err := s.apply(ctx, spec)
		if errors.Is(err, errClaimRace) && try < 5 {
			continue
		}
		if errors.Is(err, errClaimRace) {
			err = fmt.Errorf("%w: route claims keep changing concurrently; retry", errConflictPlain)
		}
		return res, err
	}
}

// apply is one attempt of Apply on a normalized, valid spec.
func (s *Service) apply(ctx context.Context, spec model.AppSpec) (model.ApplyResult, error) {
	hash := model.TemplateHash(spec)
	key := model.AppKey(spec.Namespace, spec.Name)
	cur, err := store.GetJSON[model.App](ctx, s.Store, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return model.ApplyResult{}, err
	}
	exists := err == nil
	now := s.now()
	app := cur.Value
	if exists && app.Deleting {
		return model.ApplyResult{}, fmt.Errorf("%w: app %s/%s is being deleted; wait until it is gone", errConflictPlain, spec.Namespace, spec.Name)
	}
	var ops []store.Op
	newRev := !exists
	if exists {
		oldHash := model.TemplateHash(app.Spec)
		newRev = oldHash != hash
		if !newRev && app.DesiredInstances() == desired(spec) && sameSpec(app.Spec, spec) {
			return model.ApplyResult{App: app}, nil
		}
	} else {
		app = model.App{Namespace: spec.Namespace, Name: spec.Name, CreatedAt: now}
	}
	if newRev {
		app.Revision = max(app.Revision, app.LatestRevision) + 1
		app.LatestRevision = app.Revision
		tmpl := spec
		tmpl.Instances = nil
		rev := model.Revision{Namespace: spec.Namespace, App: spec.Name, Number: app.Revision,
			Spec: tmpl, Hash: hash, CreatedAt: now}
		b, _ := json.Marshal(rev)
		ops = append(ops, store.Put(model.RevisionKey(spec.Namespace, spec.Name, app.Revision), b))
	}
	claimCmps, claimOps, err := s.routeClaims(ctx, spec.Namespace, spec.Name, spec.Routes, app.Spec.Routes)
	if err != nil {
		return model.ApplyResult{}, err
	}
	ops = append(ops, claimOps...)
	n := desired(spec)
	app.Spec = spec
	app.Spec.Instances = &n
	app.UpdatedAt = now
	b, _ := json.Marshal(app)
	ops = append(ops, store.Put(key, b))
	cmps := append([]store.Compare{{Key: key, ModRev: cur.ModRev}}, claimCmps...)
	_, err = s.Store.Txn(ctx, store.Txn{Compares: cmps, Ops: ops})
	if errors.Is(err, store.ErrConflict) {
		if len(claimCmps) > 0 {
			if latest, gerr := s.Store.Get(ctx, key); (gerr == nil && latest.ModRev == cur.ModRev) || (errors.Is(gerr, store.ErrNotFound) && cur.ModRev == 0) {
				return model.ApplyResult{}, errClaimRace
			}
		}
		return model.ApplyResult{}, s.conflict(ctx, key)
	}
	if err != nil {
		return model.ApplyResult{}, err
	}
	return model.ApplyResult{App: app, Changed: true, NewRevision: newRev}, nil
}

var errConflictPlain = errors.New("conflict")

// IsConflict reports whether err is a concurrent-write or state conflict
// (HTTP 409).
func IsConflict(err error) bool {
	var ce *ConflictError
	return errors.As(err, &ce) || errors.Is(err, errConflictPlain)
}

func (s *Service) conflict(ctx context.Context, key string) error {
	cur, err := store.GetJSON[model.App](ctx, s.Store, key)
	if err != nil {
		return &ConflictError{}
	}
	return &ConflictError{Revision: cur.Value.Revision}
}

// sameSpec reports whether two specs are equal apart from Instances.
func sameSpec(a, b model.AppSpec) bool {
	a.Instances, b.Instances = nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func desired(spec model.AppSpec) int {
	if spec.Instances == nil {
		return model.DefaultInstances
	}
	return *spec.Instances
}

// Scale sets the desired instance count without a new revision.
func (s *Service) Scale(ctx context.Context, ns, name string, n int) (model.App, error) {
	if n < 0 || n > model.MaxInstancesPerApp {
		return model.App{}, &model.ValidationError{Errors: []model.FieldError{{Field: "instances",
			Message: fmt.Sprintf("must be between 0 and %d", model.MaxInstancesPerApp)}}}
	}
	app, err := store.Update(ctx, s.Store, model.AppKey(ns, name), func(a *model.App) error {
		if a.Deleting {
			return fmt.Errorf("%w: app %s/%s is being deleted", errConflictPlain, ns, name)
		}
		switch {
		case a.Spec.IsSystem():
			return &model.ValidationError{Errors: []model.FieldError{{Field: "instances",
				Message: "a system app runs one instance on every matching node; change its constraints instead of scaling"}}}
		case a.Spec.IsBatch():
			return &model.ValidationError{Errors: []model.FieldError{{Field: "instances",
				Message: "a batch app runs to completion; set completions and parallelism in its spec instead of scaling"}}}
		}
		if a.DesiredInstances() == n {
			return store.ErrSkip
		}
		a.Spec.Instances = &n
		a.UpdatedAt = s.now()
		return nil
	})
	return app, notFound(err, ns, name)
}

// Delete marks the app for deletion; the deployment controller stops its
// instances and then removes it. Deleting twice is not an error.
func (s *Service) Delete(ctx context.Context, ns, name string) (model.App, error) {
	app, err := store.Update(ctx, s.Store, model.AppKey(ns, name), func(a *model.App) error {
		if a.Deleting {
			return store.ErrSkip
		}
		a.Deleting = true
		a.UpdatedAt = s.now()
		return nil
	})
	return app, notFound(err, ns, name)
}

// notFound turns the store's not-found into ErrNotFound naming the app.
func notFound(err error, ns, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q in namespace %q", ErrNotFound, name, ns)
	}
	return err
}
