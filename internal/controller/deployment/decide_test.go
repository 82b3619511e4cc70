package deployment

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func app(rev int64, n int, health bool) *model.App {
	a := &model.App{Namespace: "default", Name: "web", Revision: rev}
	a.Spec.Instances = &n
	if health {
		a.Spec.Health = &model.HealthCheck{TCP: &model.TCPCheck{Port: "http"}}
	}
	return a
}

// inst builds an instance: state "ready" means running and healthy.
func inst(id string, rev int64, state string, age int) model.Instance {
	in := model.Instance{ID: id, Revision: rev, Desired: model.DesiredRun, Node: "n1",
		CreatedAt: t0.Add(time.Duration(age) * time.Second)}
	switch state {
	case "ready":
		in.Status = model.InstanceStatus{State: model.StateRunning, Health: model.HealthHealthy}
	case "running":
		in.Status = model.InstanceStatus{State: model.StateRunning, Health: model.HealthUnknown}
	case "unplaced":
		in.Node = ""
		in.Status.State = model.StatePending
	case "stopped":
		in.Desired = model.DesiredStop
		in.Status.State = model.StateStopped
	case "stopping":
		in.Desired = model.DesiredStop
		in.Status.State = model.StateStopping
	default:
		in.Status.State = state
	}
	return in
}

var readyNodes = map[string]*model.Node{"n1": {Name: "n1", Status: model.NodeReady}}

func TestDecide(t *testing.T) {
	cases := []struct {
		name  string
		app   *model.App
		insts []model.Instance
		nodes map[string]*model.Node
		want  Decision
	}{
		{name: "new app creates all", app: app(1, 3, true),
			want: Decision{Create: 3}},
		{name: "converged does nothing", app: app(1, 2, true),
			insts: []model.Instance{inst("a", 1, "ready", 1), inst("b", 1, "ready", 2)},
			want:  Decision{}},
		{name: "scale up fills the gap", app: app(1, 3, false),
			insts: []model.Instance{inst("a", 1, "running", 1)},
			want:  Decision{Create: 2}},
		{name: "scale down stops unplaced, then unready, then newest", app: app(1, 1, true),
			insts: []model.Instance{inst("a", 1, "ready", 1), inst("b", 1, "ready", 2),
				inst("c", 1, "running", 3), inst("d", 1, "unplaced", 0)},
			want: Decision{Stop: []Stop{{"d", "scaled down to 1"}, {"c", "scaled down to 1"}, {"b", "scaled down to 1"}}}},
		{name: "finished instances are deleted", app: app(1, 1, false),
			insts: []model.Instance{inst("a", 1, "running", 1), inst("old", 1, "stopped", 0)},
			want:  Decision{Delete: []string{"old"}}},
		{name: "stopping instances are left alone", app: app(1, 1, false),
			insts: []model.Instance{inst("a", 1, "running", 1), inst("s", 1, "stopping", 0)},
			want:  Decision{}},
		{name: "rollout starts with one surge instance", app: app(2, 2, true),
			insts: []model.Instance{inst("a", 1, "ready", 1), inst("b", 1, "ready", 2)},
			want:  Decision{Create: 1}},
		{name: "rollout waits for the new instance to be ready", app: app(2, 2, true),
			insts: []model.Instance{inst("a", 1, "ready", 1), inst("b", 1, "ready", 2), inst("n1", 2, "running", 3)},
			want:  Decision{Waiting: "waiting for n1 (revision 2) to become ready"}},
		{name: "rollout stops one old once the new one is ready", app: app(2, 2, true),
			insts: []model.Instance{inst("a", 1, "ready", 1), inst("b", 1, "ready", 2), inst("n1", 2, "ready", 3)},
			want:  Decision{Create: 1, Stop: []Stop{{"b", "replaced by revision 2"}}}},
		{name: "rollout prefers stopping an unready old instance", app: app(2, 2, true),
			insts: []model.Instance{inst("a", 1, "failed", 1), inst("b", 1, "ready", 2), inst("n1", 2, "ready", 3)},
			want:  Decision{Create: 1, Stop: []Stop{{"a", "replaced by revision 2"}}}},
		{name: "rollout creates the next after a stop", app: app(2, 2, true),
			insts: []model.Instance{inst("b", 1, "ready", 2), inst("n1", 2, "ready", 3)},
			want:  Decision{Create: 1}},
		{name: "rollout finishes by stopping the rest", app: app(2, 2, true),
			insts: []model.Instance{inst("b", 1, "ready", 2), inst("n1", 2, "ready", 3), inst("n2", 2, "ready", 4)},
			want:  Decision{Stop: []Stop{{"b", "replaced by revision 2"}}}},
		{name: "rollout to zero stops old", app: app(2, 0, true),
			insts: []model.Instance{inst("a", 1, "ready", 1)},
			want:  Decision{Stop: []Stop{{"a", "replaced by revision 2"}}}},
		{name: "instances on a down node are lost and replaced", app: app(1, 2, false),
			nodes: map[string]*model.Node{"n1": {Name: "n1", Status: model.NodeDown}},
			insts: []model.Instance{inst("a", 1, "running", 1)},
			want:  Decision{Lost: []string{"a"}, Create: 2}},
		{name: "deleting stops everything", app: func() *model.App { a := app(1, 2, false); a.Deleting = true; return a }(),
			insts: []model.Instance{inst("a", 1, "running", 1), inst("b", 1, "stopping", 2)},
			want:  Decision{Stop: []Stop{{"a", "app deleted"}}}},
		{name: "deleting with nothing left deletes the app", app: func() *model.App { a := app(1, 2, false); a.Deleting = true; return a }(),
			want: Decision{DeleteApp: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.nodes
			if nodes == nil {
				nodes = readyNodes
			}
			got := Decide(tc.app, tc.insts, nodes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestDecideRolloutConverges simulates a full rolling update where every
// new instance becomes ready at once, and checks the instance count never
// exceeds desired+1 nor drops below desired ready.
func TestDecideRolloutConverges(t *testing.T) {
	const n = 4
	a := app(2, n, true)
	var insts []model.Instance
	for i := 0; i < n; i++ {
		insts = append(insts, inst(fmt.Sprintf("old%d", i), 1, "ready", i))
	}
	for step := 0; step < 100; step++ {
		d := Decide(a, insts, readyNodes)
		if d.Create == 0 && len(d.Stop) == 0 {
			break
		}
		for _, s := range d.Stop {
			for i := range insts {
				if insts[i].ID == s.ID {
					insts = append(insts[:i], insts[i+1:]...)
					break
				}
			}
		}
		for i := 0; i < d.Create; i++ {
			insts = append(insts, inst(fmt.Sprintf("new%d", step), 2, "ready", 100+step))
		}
		if len(insts) > n+1 {
			t.Fatalf("step %d: %d instances, more than desired+1", step, len(insts))
		}
		if len(insts) < n {
			t.Fatalf("step %d: only %d instances, fewer than desired", step, len(insts))
		}
	}
	for _, in := range insts {
		if in.Revision != 2 {
			t.Fatalf("instance %s still at revision %d", in.ID, in.Revision)
		}
	}
	if len(insts) != n {
		t.Fatalf("ended with %d instances, want %d", len(insts), n)
	}
}
