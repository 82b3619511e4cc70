package api

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

func TestAppEndpoints(t *testing.T) {
	c, st, _ := newServer(t)
	ctx := context.Background()
	_, err := c.Endpoints(ctx, "", "web")
	apiErr(t, err, http.StatusNotFound)
	if _, err := c.Apply(ctx, "", []byte("name: web\nimage: berth-test/busybox:latest\nports: [{name: http, containerPort: 8080}]\n")); err != nil {
		t.Fatal(err)
	}
	for _, in := range []model.Instance{
		{ID: "web-1", Namespace: "default", App: "web", Node: "n1", Desired: model.DesiredRun,
			Status: model.InstanceStatus{State: model.StateRunning, IP: netip.MustParseAddr("10.89.0.2")}},
		{ID: "web-2", Namespace: "default", App: "web", Node: "n1", Desired: model.DesiredRun,
			Status: model.InstanceStatus{State: model.StateStarting}},
	} {
		if _, err := store.PutJSON(ctx, st, in.Key(), in, 0); err != nil {
			t.Fatal(err)
		}
	}
	ep, err := c.Endpoints(ctx, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Name != "web.default.berth." || len(ep.Addresses) != 1 || ep.Addresses[0].IP.String() != "10.89.0.2" ||
		ep.NotReady != 1 || len(ep.SRV) != 1 || ep.SRV[0].Name != "_http._tcp.web.default.berth." ||
		ep.SRV[0].Target != "web-1.web.default.berth." || ep.SRV[0].Port != 8080 {
		t.Fatalf("endpoints = %+v", ep)
	}
}
