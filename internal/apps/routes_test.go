package apps

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

func newService(t *testing.T) *Service {
	t.Helper()
	st := bolttest.Open(t)
	return &Service{Store: st}
}

func routed(ns, name string, routes ...model.Route) model.AppSpec {
	return model.AppSpec{Name: name, Namespace: ns, Image: "berth-test/busybox:latest",
		Ports: []model.PortSpec{{Name: "http", ContainerPort: 8080}}, Routes: routes}
}

func TestSecondAppOnSameHostAndPathIsRefused(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	hello := model.Route{Host: "hello.example.test", Port: "http"}
	if _, err := s.Apply(ctx, routed("team-a", "one", hello)); err != nil {
		t.Fatal(err)
	}
	// Same host and path ("/" and "" are the same prefix), other app.
	_, err := s.Apply(ctx, routed("team-b", "two", model.Route{Host: "Hello.Example.Test", Path: "/", Port: "http"}))
	if !IsConflict(err) || !strings.Contains(err.Error(), `routes[0]: host hello.example.test path / is routed to app "one" in namespace "team-a"`) {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := s.Store.Get(ctx, model.AppKey("team-b", "two")); err == nil {
		t.Fatal("the refused app was stored")
	}
	// Another path on the same host is fine; so is re-applying the owner.
	if _, err := s.Apply(ctx, routed("team-b", "two", model.Route{Host: "hello.example.test", Path: "/api", Port: "http"})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, routed("team-a", "one", hello, model.Route{Host: "www.example.test", Port: "http"})); err != nil {
		t.Fatalf("owner re-apply: %v", err)
	}
	// TCP ports are claimed too.
	tcp := model.Route{Protocol: model.RouteTCP, ListenPort: 5432, Port: "http"}
	if _, err := s.Apply(ctx, routed("team-a", "db", tcp)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, routed("team-b", "db", tcp)); !IsConflict(err) || !strings.Contains(err.Error(), `tcp port 5432 is routed to app "db" in namespace "team-a"`) {
		t.Fatalf("tcp claim: %v", err)
	}
	// Dropping the route releases the claim.
	if _, err := s.Apply(ctx, routed("team-a", "one", model.Route{Host: "www.example.test", Port: "http"})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.Get(ctx, hello.ClaimKey()); err != store.ErrNotFound {
		t.Fatalf("claim not released: %v", err)
	}
	if _, err := s.Apply(ctx, routed("team-b", "two", hello)); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

func TestClaimOfRemovedAppIsTakenOver(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	r := model.Route{Host: "gone.test", Port: "http"}
	if _, err := s.Apply(ctx, routed("default", "old", r)); err != nil {
		t.Fatal(err)
	}
	// Being deleted still owns it.
	if _, err := s.Delete(ctx, "default", "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, routed("default", "new", r)); !IsConflict(err) || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("claim of an app being deleted: %v", err)
	}
	// The controller removes the app; its claim is left behind.
	if _, err := s.Store.Txn(ctx, store.Txn{Ops: []store.Op{store.Delete(model.AppKey("default", "old"))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, routed("default", "new", r)); err != nil {
		t.Fatalf("take over a stale claim: %v", err)
	}
}

// TestConcurrentClaimsOneWins: eight apps apply the same host at once;
// exactly one wins and every other error names it.
func TestConcurrentClaimsOneWins(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	r := model.Route{Host: "race.test", Port: "http"}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Apply(ctx, routed("default", fmt.Sprintf("app%d", i), r))
		}()
	}
	wg.Wait()
	winners := 0
	winner := ""
	for i, err := range errs {
		if err == nil {
			winners++
			winner = fmt.Sprintf("app%d", i)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners: %v", winners, errs)
	}
	for _, err := range errs {
		if err != nil && (!IsConflict(err) || !strings.Contains(err.Error(), fmt.Sprintf("routed to app %q", winner))) {
			t.Fatalf("loser error %v does not name the winner %s", err, winner)
		}
	}
}
