package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

func TestRolloutRequests(t *testing.T) {
	c, st, _ := newServer(t)
	ctx := context.Background()
	if _, err := c.Apply(ctx, "", spec("1", 1)); err != nil {
		t.Fatal(err)
	}
	// Nothing rolls out: promote and abort are refused, nothing stored.
	for _, a := range []string{model.ActionPromote, model.ActionAbort, model.ActionPause, model.ActionResume} {
		_, err := c.RolloutAction(ctx, "", "web", a, client.RolloutOptions{})
		if e := apiErr(t, err, http.StatusConflict); !strings.Contains(e.Message, "no") {
			t.Fatalf("%s: %q", a, e.Message)
		}
	}
	if v, err := c.Rollout(ctx, "", "web"); err != nil || v.Pending != nil || v.Rollout != nil || v.Revision != 1 {
		t.Fatalf("state changed: %+v %v", v, err)
	}
	_, err := c.RolloutAction(ctx, "", "web", "explode", client.RolloutOptions{})
	if e := apiErr(t, err, http.StatusBadRequest); e.Fields[0].Field != "action" {
		t.Fatalf("%+v", e)
	}
	// Undo needs an earlier revision.
	_, err = c.RolloutAction(ctx, "", "web", model.ActionUndo, client.RolloutOptions{})
	if e := apiErr(t, err, http.StatusBadRequest); e.Fields[0].Field != "toRevision" {
		t.Fatalf("%+v", e)
	}
	if _, err := c.Apply(ctx, "", spec("2", 1)); err != nil {
		t.Fatal(err)
	}
	_, err = c.RolloutAction(ctx, "", "web", model.ActionUndo, client.RolloutOptions{ToRevision: 7})
	apiErr(t, err, http.StatusBadRequest)
	v, err := c.RolloutAction(ctx, "", "web", model.ActionUndo, client.RolloutOptions{})
	if err != nil || v.Pending == nil || v.Pending.ToRevision != 1 {
		t.Fatalf("undo: %+v %v", v, err)
	}
	// One request at a time.
	_, err = c.RolloutAction(ctx, "", "web", model.ActionUndo, client.RolloutOptions{})
	apiErr(t, err, http.StatusConflict)
	if _, err := st.Get(ctx, model.RolloutRequestKey("default", "web")); err != nil {
		t.Fatal(err)
	}
	_, err = c.Rollout(ctx, "", "nope")
	apiErr(t, err, http.StatusNotFound)
}
