package placement

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt/bolttest"
)

// TestGPUsAndPinnedInstances: instances asking for GPUs get distinct
// device indexes recorded on them, and a pinned instance lands on its
// node or nowhere.
func TestGPUsAndPinnedInstances(t *testing.T) {
	st := bolttest.Open(t)
	ctx := context.Background()
	for _, n := range []model.Node{
		{Name: "cpu", Status: model.NodeReady, Drivers: []string{"docker"}, Capacity: model.Resources{CPU: 4000, Memory: 4 << 30}},
		{Name: "gpu", Status: model.NodeReady, Drivers: []string{"docker"}, Capacity: model.Resources{CPU: 4000, Memory: 4 << 30, GPUs: 3}},
	} {
		mustPut(t, st, model.NodeKey(n.Name), n)
	}
	spec := model.AppSpec{Name: "train", Namespace: "default", Image: "x", Driver: "docker", Resources: model.Resources{GPUs: 1}}
	mustPut(t, st, model.RevisionKey("default", "train", 1), model.Revision{Namespace: "default", App: "train", Number: 1, Spec: spec})
	for i := 0; i < 4; i++ {
		in := model.Instance{ID: fmt.Sprintf("train-%d", i), Namespace: "default", App: "train", Revision: 1, Desired: model.DesiredRun,
			Resources: spec.Resources, Status: model.InstanceStatus{State: model.StatePending}, CreatedAt: time.Unix(int64(i), 0)}
		if i == 3 {
			in.TargetNode = "cpu" // pinned to a node without GPUs
		}
		mustPut(t, st, in.Key(), in)
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil)})
	if _, err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	insts, err := store.ListValues[model.Instance](ctx, st, model.PrefixInstances)
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]string{}
	for _, in := range insts {
		if in.ID == "train-3" {
			if in.Node != "" || in.PlacementMessage != "0/1 nodes fit: no gpus" {
				t.Errorf("pinned instance: node %q, message %q", in.Node, in.PlacementMessage)
			}
			continue
		}
		if in.Node != "gpu" || len(in.GPUs) != 1 {
			t.Fatalf("%s on %q with gpus %v", in.ID, in.Node, in.GPUs)
		}
		if other, dup := used[in.GPUs[0]]; dup {
			t.Fatalf("gpu %d given to %s and %s", in.GPUs[0], other, in.ID)
		}
		used[in.GPUs[0]] = in.ID
	}
	if len(used) != 3 {
		t.Fatalf("gpus used %v", used)
	}
}
