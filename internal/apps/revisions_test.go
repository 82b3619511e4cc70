package apps

import (
	"context"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

func TestRoutesOnlyChangeMakesNoRevision(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	res, err := s.Apply(ctx, routed("default", "web", model.Route{Host: "web.test", Port: "http"}))
	if err != nil || res.App.Revision != 1 {
		t.Fatal(res, err)
	}
	spec := routed("default", "web", model.Route{Host: "www.test", Port: "http"})
	spec.Rollout = &model.RolloutSpec{Type: model.RolloutCanary}
	res, err = s.Apply(ctx, spec)
	if err != nil || !res.Changed || res.NewRevision || res.App.Revision != 1 || res.App.Spec.Routes[0].Host != "www.test" {
		t.Fatalf("routes and rollout change: %+v %v", res, err)
	}
	// The old claim is released, the new one taken.
	if _, err := s.Store.Get(ctx, (&model.Route{Host: "web.test", Port: "http"}).ClaimKey()); err != store.ErrNotFound {
		t.Fatalf("old claim: %v", err)
	}
	if res, _ = s.Apply(ctx, spec); res.Changed {
		t.Fatal("identical apply changed the app")
	}
}

func TestNewRevisionsNumberFromLatest(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	if _, err := s.Apply(ctx, routed("default", "web")); err != nil {
		t.Fatal(err)
	}
	// As after a rollback: current revision 1, latest made 3.
	if _, err := store.Update(ctx, s.Store, model.AppKey("default", "web"), func(a *model.App) error {
		a.LatestRevision = 3
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	spec := routed("default", "web")
	spec.Env = map[string]string{"A": "1"}
	res, err := s.Apply(ctx, spec)
	if err != nil || res.App.Revision != 4 || res.App.LatestRevision != 4 {
		t.Fatalf("%+v %v", res.App, err)
	}
}
