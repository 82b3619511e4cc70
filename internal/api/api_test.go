package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store/bolt"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

const token = "test-token"

// newServer serves the API on a real bolt store in a temp dir.
func newServer(t *testing.T) (*client.Client, *bolt.Store, string) {
	t.Helper()
	st := bolttest.Open(t)
	srv := httptest.NewServer(New(Options{Store: st, AdminToken: token}))
	t.Cleanup(func() { srv.Close(); st.Close() })
	return client.New(srv.URL, token), st, srv.URL
}

func spec(env string, instances int) []byte {
	return []byte(fmt.Sprintf("name: web\nimage: berth-test/busybox:latest\ninstances: %d\nenv: {V: %q}\n", instances, env))
}

func apiErr(t *testing.T, err error, status int) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != status {
		t.Fatalf("error %v, want HTTP %d", err, status)
	}
	return ce
}

func TestAuthRequired(t *testing.T) {
	_, _, url := newServer(t)
	_, err := client.New(url, "wrong").ListApps(context.Background(), "", false)
	if e := apiErr(t, err, http.StatusUnauthorized); e.Code != "unauthorized" {
		t.Fatalf("code %q", e.Code)
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestApplyRevisionsAndScale(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	res, err := c.Apply(ctx, "", spec("a", 2))
	if err != nil || !res.Changed || !res.NewRevision || res.App.Revision != 1 {
		t.Fatalf("create: %+v %v", res, err)
	}
	if res, _ = c.Apply(ctx, "", spec("a", 2)); res.Changed {
		t.Fatal("identical apply changed something")
	}
	if res, _ = c.Apply(ctx, "", spec("a", 4)); !res.Changed || res.NewRevision || res.App.Revision != 1 || res.App.DesiredInstances() != 4 {
		t.Fatalf("instances-only apply: %+v", res)
	}
	if res, _ = c.Apply(ctx, "", spec("b", 4)); !res.NewRevision || res.App.Revision != 2 {
		t.Fatalf("env change: %+v", res)
	}
	revs, err := c.Revisions(ctx, "", "web")
	if err != nil || len(revs) != 2 || revs[1].Spec.Env["V"] != "b" || revs[0].Spec.Instances != nil {
		t.Fatalf("revisions %+v %v", revs, err)
	}
	if _, err := c.Scale(ctx, "", "web", 7); err != nil {
		t.Fatal(err)
	}
	v, _ := c.GetApp(ctx, "", "web")
	if v.DesiredInstances() != 7 || v.Revision != 2 || v.Status.Desired != 7 {
		t.Fatalf("after scale: %+v", v)
	}
	apiErr(t, func() error { _, err := c.Scale(ctx, "", "web", -1); return err }(), http.StatusBadRequest)
	apiErr(t, func() error { _, err := c.Scale(ctx, "", "nope", 1); return err }(), http.StatusNotFound)
	apiErr(t, func() error { _, err := c.GetApp(ctx, "", "nope"); return err }(), http.StatusNotFound)
}

func TestInvalidSpecStoresNothing(t *testing.T) {
	c, st, _ := newServer(t)
	before, _ := st.Rev(context.Background())
	_, err := c.Apply(context.Background(), "", []byte("name: web\nimage: x\ninstances: -2\nports: [{name: a, containerPort: 0}]\n"))
	e := apiErr(t, err, http.StatusBadRequest)
	fields := map[string]bool{}
	for _, f := range e.Fields {
		fields[f.Field] = true
	}
	if e.Code != "invalid" || !fields["instances"] || !fields["ports[0].containerPort"] {
		t.Fatalf("400 body %+v", e.APIError)
	}
	if after, _ := st.Rev(context.Background()); after != before {
		t.Fatalf("store revision moved from %d to %d", before, after)
	}
}

// TestConcurrentAppliesConflict: every concurrent apply either wins or
// gets 409 with the current revision; no change is lost silently.
func TestConcurrentAppliesConflict(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	if _, err := c.Apply(ctx, "", spec("base", 1)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	wins, conflicts := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := c.Apply(ctx, "", spec(fmt.Sprint("v", i), 1))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
				return
			}
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status == http.StatusConflict && ce.Revision >= 1 {
				conflicts++
				return
			}
			t.Errorf("apply %d: %v", i, err)
		}(i)
	}
	wg.Wait()
	v, err := c.GetApp(ctx, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	if int(v.Revision) != 1+wins || wins+conflicts != 16 || wins == 0 {
		t.Fatalf("revision %d after %d wins and %d conflicts", v.Revision, wins, conflicts)
	}
}

func TestDeleteThenApplyConflicts(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	if _, err := c.Apply(ctx, "", spec("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteApp(ctx, "", "web"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteApp(ctx, "", "web"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, err := c.Apply(ctx, "", spec("b", 1))
	if e := apiErr(t, err, http.StatusConflict); !strings.Contains(e.Message, "being deleted") {
		t.Fatalf("message %q", e.Message)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	_, _, url := newServer(t)
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/nope", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestEventsFollow(t *testing.T) {
	c, st, _ := newServer(t)
	rec := events.NewRecorder(st, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec.Record(ctx, model.Event{Reason: "Old", App: "web", Namespace: "default"})
	got := make(chan model.Event, 10)
	go func() {
		_ = c.FollowEvents(ctx, client.EventFilter{App: "web"}, func(e model.Event) error { got <- e; return nil })
	}()
	if e := <-got; e.Reason != "Old" {
		t.Fatalf("first followed event %+v", e)
	}
	rec.Record(ctx, model.Event{Reason: "Other", App: "db", Namespace: "default"})
	rec.Record(ctx, model.Event{Reason: "New", App: "web", Namespace: "default"})
	select {
	case e := <-got:
		if e.Reason != "New" {
			t.Fatalf("followed %+v, want the filtered New event", e)
		}
	case <-ctx.Done():
		t.Fatal("no event streamed")
	}
}

func TestApplyNamespace(t *testing.T) {
	c, _, _ := newServer(t)
	ctx := context.Background()
	if _, err := c.Apply(ctx, "staging", spec("a", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetApp(ctx, "staging", "web"); err != nil {
		t.Fatalf("not applied to staging: %v", err)
	}
	if _, err := c.GetApp(ctx, "default", "web"); !client.IsNotFound(err) {
		t.Fatalf("also in default: %v", err)
	}
	body := []byte("name: web\nnamespace: prod\nimage: berth-test/busybox:latest\n")
	_, err := c.Apply(ctx, "staging", body)
	if e := apiErr(t, err, http.StatusBadRequest); len(e.Fields) != 1 || e.Fields[0].Field != "namespace" {
		t.Fatalf("contradicting namespaces: %+v", e.APIError)
	}
	if res, err := c.Apply(ctx, "", body); err != nil || res.App.Namespace != "prod" {
		t.Fatalf("spec's own namespace: %+v %v", res, err)
	}
}
