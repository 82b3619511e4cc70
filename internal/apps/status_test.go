package apps

import (
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

func TestStatus(t *testing.T) {
	app := &model.App{Revision: 2}
	n := 2
	app.Spec.Instances = &n
	app.Spec.Health = &model.HealthCheck{TCP: &model.TCPCheck{Port: "p"}}
	ready := func(id string, rev int64) model.Instance {
		return model.Instance{ID: id, Revision: rev, Desired: model.DesiredRun, Node: "n",
			Status: model.InstanceStatus{State: model.StateRunning, Health: model.HealthHealthy}}
	}
	crashing := ready("c", 2)
	crashing.Status = model.InstanceStatus{State: model.StateFailed, Message: "exited with code 3", Failures: 3}
	never := ready("v", 2)
	never.Status = model.InstanceStatus{State: model.StateStopped, Message: "exited with code 0"}
	unplaced := model.Instance{ID: "u", Revision: 2, Desired: model.DesiredRun, PlacementMessage: "0/1 nodes fit: x",
		Status: model.InstanceStatus{State: model.StatePending}}
	cases := []struct {
		name      string
		insts     []model.Instance
		converged bool
		failing   bool
		message   string
		outdated  int
	}{
		{"converged", []model.Instance{ready("a", 2), ready("b", 2)}, true, false, "", 0},
		{"old revision still running", []model.Instance{ready("a", 2), ready("b", 2), ready("o", 1)}, false, false, "", 1},
		{"crash loop is failing", []model.Instance{ready("a", 2), crashing}, false, true, "c: exited with code 3 (3 failures in a row)", 0},
		{"ended for good is failing", []model.Instance{ready("a", 2), never}, false, true, "v: exited with code 0", 0},
		{"unschedulable is not failing", []model.Instance{ready("a", 2), unplaced}, false, false, "unschedulable: 0/1 nodes fit: x", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Status(app, tc.insts)
			if st.Converged != tc.converged || st.Failing != tc.failing || st.Message != tc.message || st.Outdated != tc.outdated {
				t.Fatalf("status %+v", st)
			}
		})
	}
}
