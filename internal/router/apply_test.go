package router

import (
	"context"
	"net/http"
	"testing"

	"github.com/berth-dev/berth/internal/apps"
	"github.com/berth-dev/berth/internal/model"
)

// TestAppliedSpecIsRouted: a spec applied through the apps service (parse,
// normalize, validate, claim) is routed as written, default path included.
func TestAppliedSpecIsRouted(t *testing.T) {
	st := newStore(t)
	spec, err := model.ParseSpec([]byte(`name: hello
image: berth-test/busybox:latest
ports: [{name: http, containerPort: 8080}]
routes:
- {host: Hello.Example.Test., port: http}
- host: hello.example.test
  path: /beta/
  port: http
  traffic: {rules: [{header: {name: X-Beta, value: "1"}, target: stable}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&apps.Service{Store: st}).Apply(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	putInstance(t, st, "hello", "h1", 1, hostPort(backend(t, "A")))
	r := startRouter(t, st, Options{})
	eventually(t, "h1 routed", func() bool { return backendsOf(r, "hello.example.test", "/") == "h1" })
	c := newClient(t)
	for _, path := range []string{"/", "/beta", "/beta/x"} {
		if code, body := get(t, c, r, "hello.example.test", path); code != http.StatusOK || body != "A" {
			t.Fatalf("%s: %d %q", path, code, body)
		}
	}
	if rt := r.Table().Match("hello.example.test", "/beta/x"); rt == nil || rt.Path() != "/beta" || !rt.Policy.Split {
		t.Fatalf("beta route %+v", rt)
	}
}
