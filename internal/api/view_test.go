package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clusterview"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// private are values of fields the view must never carry.
var private = []string{"s3cr3t-env", "registry.example/private:1", "s3cr3t-cmd", "s3cr3t-probe", "s3cr3t-label",
	"s3cr3t-pull", "container-abc", "s3cr3t-message"}

// A node certificate reads and watches the cluster view: every app,
// instance and node of the cluster (not only its own), with nothing
// private; without credentials it is 401.
func TestClusterViewForNodesIsRedacted(t *testing.T) {
	ctx, ca, srv, tok := tokenServer(t)
	code, jr, body, keyPEM := joinAs(t, srv, ca, "/v1/cluster/join", tok.Token, "n1", nil)
	if code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	cert, err := tls.X509KeyPair([]byte(jr.CertPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nodeTLS := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}
	admin := remote.New(remote.Options{Server: srv.URL, Token: token, TLS: &tls.Config{RootCAs: ca.Pool()}})
	defer admin.Close()
	put := func(key string, v any) {
		if _, err := store.PutJSON(ctx, admin, key, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	put(model.AppKey("shop", "db"), model.App{Namespace: "shop", Name: "db", Revision: 1, Spec: model.AppSpec{
		Name: "db", Namespace: "shop", Image: "registry.example/private:1", Env: map[string]string{"PASSWORD": "s3cr3t-env"},
		Command: []string{"s3cr3t-cmd"}, ImagePullSecret: "s3cr3t-pull", Labels: map[string]string{"l": "s3cr3t-label"},
		Ports:  []model.PortSpec{{Name: "pg", ContainerPort: 5432, Protocol: "tcp"}},
		Health: &model.HealthCheck{Exec: &model.ExecCheck{Command: []string{"s3cr3t-probe"}}}}})
	ip := netip.MustParseAddr("10.90.1.7")
	put(model.InstanceKey("shop", "db", "db-1"), model.Instance{ID: "db-1", Namespace: "shop", App: "db", Revision: 1,
		Node: "n2", Desired: model.DesiredRun, Status: model.InstanceStatus{State: model.StateRunning, Health: model.HealthHealthy,
			IP: ip, ContainerID: "container-abc", Message: "s3cr3t-message"}})
	put(model.NodeKey("n2"), model.Node{Name: "n2", Address: "192.0.2.2", Status: model.NodeReady, Subnet: "10.90.1.0/24",
		Labels: map[string]string{"l": "s3cr3t-label"}})

	code, body = get(t, agentHTTP(ca, &cert), srv.URL+"/v1/cluster/view")
	if code != http.StatusOK {
		t.Fatalf("node GET view: %d %s", code, body)
	}
	for _, p := range private {
		if strings.Contains(body, p) {
			t.Errorf("view carries private value %q: %s", p, body)
		}
	}
	for _, want := range []string{`"name": "db"`, `"ip": "10.90.1.7"`, `"subnet": "10.90.1.0/24"`, `"containerPort": 5432`, `"health": {`} {
		if !strings.Contains(body, want) {
			t.Errorf("view lacks %s: %s", want, body)
		}
	}
	if code, body := get(t, agentHTTP(ca, nil), srv.URL+"/v1/cluster/view"); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d %s", code, body)
	}

	// The watch: the first snapshot serves db-1 (another node's instance)
	// as ready; a second instance shows up in the next snapshot.
	src := clusterview.New(clusterview.Options{Server: srv.URL, TLS: nodeTLS})
	snaps, err := src.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := waitSnapshot(t, snaps, func(s table.Snapshot) bool { return len(s.Instances) == 1 })
	in, app := s.Instances[0], s.Apps[0]
	if in.Status.IP != ip || in.Node != "n2" || app.Spec.Health == nil || app.Spec.Image != "" || len(app.Spec.Env) != 0 {
		t.Fatalf("snapshot: instance %+v app %+v", in, app)
	}
	if !table.Serves(&in, app.Spec.Health != nil, map[string]*model.Node{"n2": &s.Nodes[0]}) {
		t.Fatalf("healthy running instance not served from the view: %+v", in)
	}
	// A second watcher shares the server's source and sees the same.
	snaps2, err := clusterview.New(clusterview.Options{Server: srv.URL, TLS: nodeTLS}).Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, snaps2, func(s table.Snapshot) bool { return len(s.Instances) == 1 })
	put(model.InstanceKey("shop", "db", "db-2"), model.Instance{ID: "db-2", Namespace: "shop", App: "db", Revision: 1,
		Node: "n1", Desired: model.DesiredRun, Status: model.InstanceStatus{State: model.StateRunning}})
	waitSnapshot(t, snaps, func(s table.Snapshot) bool { return len(s.Instances) == 2 })
	waitSnapshot(t, snaps2, func(s table.Snapshot) bool { return len(s.Instances) == 2 })
}

// A watch starts with a progress line, then the snapshot; a client that
// has the current revision gets no snapshot until something changes. Bad
// ?after is 400.
func TestClusterViewResume(t *testing.T) {
	_, st, url := newServer(t)
	ctx := context.Background()
	var rev int64
	for _, n := range []string{"n1", "n2"} {
		var err error
		if rev, err = store.PutJSON(ctx, st, model.NodeKey(n), model.Node{Name: n}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// lines reads the stream's lines for d (the stream stays open).
	lines := func(q string, d time.Duration) []clusterview.Line {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url+"/v1/cluster/view?watch=true"+q, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []clusterview.Line
		dec := json.NewDecoder(resp.Body)
		for {
			var l clusterview.Line
			if dec.Decode(&l) != nil {
				return out
			}
			out = append(out, l)
		}
	}
	fresh := lines("", time.Second)
	if len(fresh) != 2 || fresh[0].Type != clusterview.LineProgress || fresh[1].Type != clusterview.LineSnapshot ||
		fresh[1].View == nil || len(fresh[1].View.Nodes) != 2 || fresh[1].Rev != rev {
		t.Fatalf("fresh watch: %+v", fresh)
	}
	if l := lines("&after="+itoa(rev), time.Second); len(l) != 1 || l[0].Type != clusterview.LineProgress || l[0].Rev != rev {
		t.Fatalf("resume at the current revision: %+v", l)
	}
	if l := lines("&after="+itoa(rev-1), time.Second); len(l) != 2 || l[1].Type != clusterview.LineSnapshot || l[1].Rev != rev {
		t.Fatalf("resume at an old revision: %+v", l)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/cluster/view?watch=true&after=x", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("after=x: %d", resp.StatusCode)
	}
}

func waitSnapshot(t *testing.T, ch <-chan table.Snapshot, ok func(table.Snapshot) bool) table.Snapshot {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatal("snapshot channel closed")
			}
			if ok(s) {
				return s
			}
		case <-timeout:
			t.Fatal("no matching snapshot in 20s")
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
