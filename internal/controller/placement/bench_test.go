package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
)

// BenchmarkReconcile5000Nodes measures persisted placements: one pass
// that snapshots a bolt store of 5,000 nodes, schedules 1,000 pending
// instances of 10 apps with constraints and commits the plan.
func BenchmarkReconcile5000Nodes(b *testing.B) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var t store.Txn
	zones := []string{"a", "b", "c"}
	for i := 0; i < 5000; i++ {
		n := model.Node{Name: fmt.Sprintf("n%05d", i), Status: model.NodeReady, Drivers: []string{"docker"}, Zone: zones[i%3],
			Capacity: model.Resources{CPU: 1000 * 1000 * 1000, Memory: 1 << 50}, PortRange: model.DefaultPortRange,
			Labels: map[string]string{"disk": []string{"ssd", "hdd"}[i%2]}}
		v, _ := json.Marshal(n)
		t.Ops = append(t.Ops, store.Put(model.NodeKey(n.Name), v))
	}
	rules := [][]model.Constraint{{{Field: "zone", Op: model.OpGroupBy}}, {{Field: "disk", Op: model.OpLike, Value: "ssd"}}, nil}
	for a := 0; a < 10; a++ {
		spec := model.AppSpec{Name: fmt.Sprintf("web%d", a), Namespace: "default", Image: "x", Driver: "docker",
			Strategy: model.StrategySpread, Resources: model.Resources{CPU: 10, Memory: 1 << 20},
			Ports: []model.PortSpec{{Name: "http", ContainerPort: 80, Protocol: "tcp"}}, Constraints: rules[a%len(rules)]}
		v, _ := json.Marshal(model.Revision{Namespace: "default", App: spec.Name, Number: 1, Spec: spec})
		t.Ops = append(t.Ops, store.Put(model.RevisionKey("default", spec.Name, 1), v))
	}
	if _, err := st.Txn(ctx, t); err != nil {
		b.Fatal(err)
	}
	c := New(Options{Store: st, Events: events.NewRecorder(st, nil)})
	b.ResetTimer()
	placed := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var t store.Txn
		for j := 0; j < 1000; j++ {
			in := model.Instance{ID: fmt.Sprintf("i%d-%d", i, j), Namespace: "default", App: fmt.Sprintf("web%d", j%10), Revision: 1,
				Desired: model.DesiredRun, Resources: model.Resources{CPU: 10, Memory: 1 << 20},
				Status: model.InstanceStatus{State: model.StatePending}, CreatedAt: time.Unix(int64(j), 0)}
			v, _ := json.Marshal(in)
			t.Ops = append(t.Ops, store.Put(in.Key(), v))
		}
		if _, err := st.Txn(ctx, t); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := c.Reconcile(ctx); err != nil {
			b.Fatal(err)
		}
		placed += 1000
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
}
