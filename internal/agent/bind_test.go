package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

func TestWithBindings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	db := model.App{Namespace: "data", Name: "db", Spec: model.AppSpec{Name: "db", Namespace: "data",
		Ports: []model.PortSpec{{Name: "pg", ContainerPort: 5432}}}}
	if _, err := store.PutJSON(ctx, e.store, model.AppKey("data", "db"), db, 0); err != nil {
		t.Fatal(err)
	}
	a := &Agent{o: Options{Store: e.store}}
	spec := &model.AppSpec{Name: "web", Namespace: "shop", Bind: []model.Binding{{App: "db", Namespace: "data", Port: "pg"}}}
	env, err := a.withBindings(ctx, "shop", spec, map[string]string{"KEEP": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if env["DB_ADDR"] != "db.data.berth:5432" || env["DB_HOST"] != "db.data.berth" || env["DB_PORT"] != "5432" || env["KEEP"] != "1" {
		t.Errorf("env = %v", env)
	}
	for _, c := range []struct {
		bind model.Binding
		want string
	}{
		{model.Binding{App: "db", Port: "pg"}, "bind[0]: app db does not exist in namespace shop"},
		{model.Binding{App: "db", Namespace: "data", Port: "http"}, `bind[0]: app data/db has no port named "http"`},
	} {
		spec.Bind = []model.Binding{c.bind}
		if _, err := a.withBindings(ctx, "shop", spec, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.bind, err, c.want)
		}
	}
}
