package scheduler

import (
	"fmt"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

// benchCluster builds nodes in 3 zones with a disk label, each already
// running perNode instances of 50 apps.
func benchCluster(nodes, perNode int) Snapshot {
	var snap Snapshot
	zones := []string{"a", "b", "c"}
	disks := []string{"ssd", "nvme", "hdd"}
	for i := 0; i < nodes; i++ {
		name := fmt.Sprintf("n%05d", i)
		snap.Nodes = append(snap.Nodes, node(name, 64000, 256*gi, func(n *model.Node) {
			n.Zone, n.Region, n.Arch, n.OS = zones[i%3], "eu", "amd64", "linux"
			n.Labels = map[string]string{"disk": disks[(i/3)%3]}
			n.PortRange = [2]int{20000, 32767}
		}))
		for j := 0; j < perNode; j++ {
			snap.Instances = append(snap.Instances, running(fmt.Sprintf("x%d-%d", i, j), name,
				fmt.Sprintf("app%d", (i+j)%50), 100, 64*mi, map[string]int{"http": 20000 + j}))
		}
	}
	return snap
}

// benchAsks are 1,000 asks of 10 apps, each with constraints, spread or
// affinity, and a port.
func benchAsks() []Ask {
	rules := [][]model.Constraint{
		{{Field: "zone", Op: model.OpGroupBy}, {Field: "hostname", Op: model.OpUnique}},
		{{Field: "label:disk", Op: model.OpLike, Value: "ssd|nvme"}},
		{{Field: "hostname", Op: model.OpMaxPer, Value: "2"}, {Field: "arch", Op: model.OpIs, Value: "amd64"}},
		{{Field: "zone", Op: model.OpUnlike, Value: "c"}},
		nil,
	}
	var out []Ask
	for i := 0; i < 1000; i++ {
		app := i % 10
		out = append(out, ask(fmt.Sprintf("i%d", i), fmt.Sprintf("web%d", app), 250, 256*mi, func(a *Ask) {
			a.Constraints = rules[app%len(rules)]
			a.Ports = []model.PortSpec{{Name: "http", ContainerPort: 80}}
			switch app {
			case 5:
				a.Spread = &model.Spread{Field: "zone"}
			case 6:
				a.Affinity = []model.Affinity{{App: "app1", Field: "zone"}}
			case 7:
				a.Strategy = model.StrategyBinpack
			}
		}))
	}
	return out
}

// BenchmarkSchedule places 1,000 asks with constraints on 1,000 and
// 5,000 nodes that already run 5 instances each. placements/s is the
// scheduler's share of the cluster's placement rate.
func BenchmarkSchedule(b *testing.B) {
	for _, nodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d/asks=1000", nodes), func(b *testing.B) {
			snap := benchCluster(nodes, 5)
			asks := benchAsks()
			b.ReportAllocs()
			b.ResetTimer()
			var placed int
			for i := 0; i < b.N; i++ {
				plan := Schedule(snap, asks)
				placed = len(plan.Placements)
			}
			if placed != len(asks) {
				b.Fatalf("placed %d of %d", placed, len(asks))
			}
			b.ReportMetric(float64(placed)*float64(b.N)/b.Elapsed().Seconds(), "placements/s")
		})
	}
}

func BenchmarkSchedule1000Nodes100Asks(b *testing.B) {
	var nodes []model.Node
	for i := 0; i < 1000; i++ {
		nodes = append(nodes, node(fmt.Sprintf("n%04d", i), 8000, 16*gi))
	}
	var asks []Ask
	for i := 0; i < 100; i++ {
		asks = append(asks, ask(fmt.Sprintf("i%d", i), "web", 100, 128*mi,
			func(a *Ask) { a.Ports = []model.PortSpec{{Name: "http", ContainerPort: 80}} }))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Schedule(Snapshot{Nodes: nodes}, asks)
	}
}
