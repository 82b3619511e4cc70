package model

import (
	"strings"
	"testing"
)

func TestBindEnv(t *testing.T) {
	got := BindEnv(Binding{App: "pg-main", Port: "pg"}, "shop", 5432)
	want := map[string]string{"PG_MAIN_HOST": "pg-main.shop.berth", "PG_MAIN_PORT": "5432", "PG_MAIN_ADDR": "pg-main.shop.berth:5432"}
	if len(got) != len(want) {
		t.Fatalf("BindEnv = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if env := BindEnv(Binding{App: "db", Namespace: "data", Port: "pg", Env: "DATABASE"}, "shop", 5432); env["DATABASE_ADDR"] != "db.data.berth:5432" {
		t.Errorf("other namespace, own prefix: %v", env)
	}
}

func TestBindValidation(t *testing.T) {
	for _, c := range []struct {
		name, spec string
		want       []string // field: message fragments; none means valid
	}{
		{"valid", "bind: [{app: db, port: pg}, {app: db, namespace: other, port: pg, env: OTHER_DB}]", nil},
		{"missing app and port", "bind: [{}]", []string{"bind[0].app: is required", "bind[0].port: is required"}},
		{"bad names", "bind: [{app: DB, namespace: x_y, port: p_g}]", []string{"bind[0].app", "bind[0].namespace", "bind[0].port"}},
		{"duplicate prefix", "bind: [{app: db, port: pg}, {app: db, namespace: other, port: pg}]", []string{"bind[1].env: prefix DB is already used by bind[0]"}},
		{"bad prefix", "bind: [{app: db, port: pg, env: 1DB}]", []string{"bind[0].env: prefix must match"}},
		{"clash with env", "env: {DB_ADDR: x}\nbind: [{app: db, port: pg}]", []string{"bind[0]: sets DB_ADDR, which env sets too"}},
		{"unknown field", "bind: [{app: db, port: pg, host: x}]", []string{"bind[0].host"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSpec([]byte("name: web\nimage: nginx\n" + c.spec))
			var msg string
			if err != nil {
				msg = err.Error()
			} else {
				s.Normalize()
				if verr := s.Validate(); verr != nil {
					msg = verr.Error()
				}
			}
			if len(c.want) == 0 && msg != "" {
				t.Fatalf("want valid, got %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}
