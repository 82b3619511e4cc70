package apps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Get returns one app with its status.
func (s *Service) Get(ctx context.Context, ns, name string) (model.AppView, error) {
	o, err := store.GetJSON[model.App](ctx, s.Store, model.AppKey(ns, name))
	if err != nil {
		return model.AppView{}, notFound(err, ns, name)
	}
	insts, err := s.Instances(ctx, ns, name)
	if err != nil {
		return model.AppView{}, err
	}
	return model.AppView{App: o.Value, Status: Status(&o.Value, insts)}, nil
}

// List returns the apps of namespace ns ("" for every namespace) with
// their status, sorted by namespace and name.
func (s *Service) List(ctx context.Context, ns string) ([]model.AppView, error) {
	prefix := model.PrefixApps
	if ns != "" {
		prefix += ns + "/"
	}
	list, err := store.ListValues[model.App](ctx, s.Store, prefix)
	if err != nil {
		return nil, err
	}
	instPrefix := model.PrefixInstances
	if ns != "" {
		instPrefix += ns + "/"
	}
	all, err := store.ListValues[model.Instance](ctx, s.Store, instPrefix)
	if err != nil {
		return nil, err
	}
	byApp := map[string][]model.Instance{}
	for _, i := range all {
		k := i.Namespace + "/" + i.App
		byApp[k] = append(byApp[k], i)
	}
	out := make([]model.AppView, 0, len(list))
	for i := range list {
		a := &list[i]
		out = append(out, model.AppView{App: *a, Status: Status(a, byApp[a.Namespace+"/"+a.Name])})
	}
	return out, nil
}

// Instances returns an app's instances sorted by creation time.
func (s *Service) Instances(ctx context.Context, ns, app string) ([]model.Instance, error) {
	insts, err := store.ListValues[model.Instance](ctx, s.Store, model.InstancePrefix(ns, app))
	if err != nil {
		return nil, err
	}
	SortInstances(insts)
	return insts, nil
}

// AppInstances is Instances for an app that must exist (ErrNotFound
// otherwise).
func (s *Service) AppInstances(ctx context.Context, ns, app string) ([]model.Instance, error) {
	if _, err := s.Store.Get(ctx, model.AppKey(ns, app)); err != nil {
		return nil, notFound(err, ns, app)
	}
	return s.Instances(ctx, ns, app)
}

// SortInstances orders by creation time, then ID.
func SortInstances(insts []model.Instance) {
	sort.Slice(insts, func(i, j int) bool {
		if !insts[i].CreatedAt.Equal(insts[j].CreatedAt) {
			return insts[i].CreatedAt.Before(insts[j].CreatedAt)
		}
		return insts[i].ID < insts[j].ID
	})
}

// Revisions returns every stored revision of an app, oldest first.
func (s *Service) Revisions(ctx context.Context, ns, app string) ([]model.Revision, error) {
	if _, err := s.Store.Get(ctx, model.AppKey(ns, app)); err != nil {
		return nil, notFound(err, ns, app)
	}
	return store.ListValues[model.Revision](ctx, s.Store, model.RevisionPrefix(ns, app))
}

// Revision returns revision n of an app.
func (s *Service) Revision(ctx context.Context, ns, app string, n int64) (model.Revision, error) {
	o, err := store.GetJSON[model.Revision](ctx, s.Store, model.RevisionKey(ns, app, n))
	if errors.Is(err, store.ErrNotFound) {
		return o.Value, fmt.Errorf("%w: app %q has no revision %d", ErrNotFound, app, n)
	}
	return o.Value, err
}

// Status summarizes an app's instances.
func Status(app *model.App, insts []model.Instance) model.AppStatus {
	st := model.AppStatus{Desired: app.DesiredInstances(), Revision: app.Revision}
	if app.Deleting {
		st.Desired = 0
	}
	hasHealth := app.Spec.Health != nil
	var msgs []string
	for i := range insts {
		in := &insts[i]
		if !in.Active() {
			if !in.Terminal() {
				st.Stopping++
			}
			continue
		}
		if in.Revision != app.Revision {
			st.Outdated++
		}
		switch in.Status.State {
		case model.StateRunning:
			st.Running++
		case model.StateFailed:
			st.Failed++
		case model.StatePending, model.StateStarting, "":
			st.Pending++
		}
		if in.Status.Health == model.HealthHealthy {
			st.Healthy++
		}
		if in.Revision == app.Revision && in.Ready(hasHealth) {
			st.Ready++
		}
		if m := instanceProblem(in); m != "" {
			msgs = append(msgs, m)
		}
		// Failing: waiting will not help. Either it keeps failing, or it
		// ended and its restart policy says it stays down.
		if in.Revision == app.Revision && (in.Status.Failures >= model.FailingThreshold || in.Terminal()) {
			st.Failing = true
		}
	}
	st.Converged = st.Ready == st.Desired && st.Outdated == 0 && st.Stopping == 0 &&
		st.Ready == st.Running && st.Pending == 0 && st.Failed == 0
	if st.Converged {
		st.Failing = false
	}
	if !st.Converged && len(msgs) > 0 {
		st.Message = firstDistinct(msgs)
	}
	model.TypeStatus(app, insts, &st)
	return st
}

func instanceProblem(in *model.Instance) string {
	if in.Node == "" && in.PlacementMessage != "" {
		return "unschedulable: " + in.PlacementMessage
	}
	switch {
	case (in.Status.State == model.StateFailed || in.Status.State == model.StateStopped) && in.Status.Message != "":
		msg := in.ID + ": " + in.Status.Message
		if in.Status.Failures > 1 {
			msg += fmt.Sprintf(" (%d failures in a row)", in.Status.Failures)
		}
		return msg
	case in.Status.Health == model.HealthUnhealthy && in.Status.Message != "":
		return in.ID + ": unhealthy: " + in.Status.Message
	}
	return ""
}

func firstDistinct(msgs []string) string {
	seen := map[string]bool{}
	var out []string
	for _, m := range msgs {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	if len(out) > 2 {
		out = append(out[:2], "...")
	}
	return strings.Join(out, "; ")
}
