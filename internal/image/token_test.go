package image

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/image/registrytest"
)

// tokenProxy fronts an anonymous registry with the bearer-token flow:
// /v2/ requests without "Bearer <token>" get a challenge naming /token,
// which hands out the token for the right basic credentials.
func tokenProxy(t *testing.T, reg *registrytest.Registry, user, pass, token string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	target, _ := url.Parse("http://" + reg.Host)
	rp := httputil.NewSingleHostReverseProxy(target)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": token})
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+host+`/token",service="berth-test",scope="repository:private:pull"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		r.Header.Del("Authorization")
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return host
}

func TestPullBearerToken(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.PushBusybox(t, "private/busybox:1")
	host := tokenProxy(t, reg, "berth", "s3cret", "tok-123")
	ref := host + "/private/busybox:1"
	s := newService(t, Options{})

	if _, err := s.Pull(bg(), ref, PullOptions{Auth: Auth{Username: "berth", Password: "wrong"}}); err == nil ||
		!strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := s.Pull(bg(), ref, PullOptions{Auth: Auth{Username: "berth", Password: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
}
