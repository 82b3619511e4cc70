package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

const gi = model.ByteSize(1 << 30)
const mi = model.ByteSize(1 << 20)

func node(name string, cpu model.MilliCPU, mem model.ByteSize, mut ...func(*model.Node)) model.Node {
	n := model.Node{Name: name, Status: model.NodeReady, Drivers: []string{"docker"},
		Capacity: model.Resources{CPU: cpu, Memory: mem}, PortRange: [2]int{20000, 20009}}
	for _, m := range mut {
		m(&n)
	}
	return n
}

func running(id, nodeName, app string, cpu model.MilliCPU, mem model.ByteSize, ports map[string]int) model.Instance {
	return model.Instance{ID: id, Namespace: "default", App: app, Node: nodeName, Desired: model.DesiredRun,
		Resources: model.Resources{CPU: cpu, Memory: mem}, HostPorts: ports,
		Status: model.InstanceStatus{State: model.StateRunning}}
}

func ask(id, app string, cpu model.MilliCPU, mem model.ByteSize, mut ...func(*Ask)) Ask {
	a := Ask{InstanceID: id, Namespace: "default", App: app, Resources: model.Resources{CPU: cpu, Memory: mem}, Driver: "docker"}
	for _, m := range mut {
		m(&a)
	}
	return a
}

// withOCI makes a node offer driver oci with the given runtimes.
func withOCI(runtimes ...string) func(*model.Node) {
	return func(n *model.Node) {
		n.Drivers = append(n.Drivers, "oci")
		n.Runtimes = runtimes
	}
}

func TestSchedule(t *testing.T) {
	cordoned := func(n *model.Node) { n.Cordoned = true }
	down := func(n *model.Node) { n.Status = model.NodeDown }
	ssd := func(n *model.Node) { n.Labels = map[string]string{"disk": "ssd", "zone": "a"} }
	withPorts := func(ps ...model.PortSpec) func(*Ask) { return func(a *Ask) { a.Ports = ps } }
	cases := []struct {
		name  string
		snap  Snapshot
		asks  []Ask
		place map[string]string // instance -> node
		ports map[string]map[string]int
		fail  map[string]string // instance -> reason
	}{
		{name: "no nodes", asks: []Ask{ask("i1", "a", 0, 0)},
			fail: map[string]string{"i1": "0/0 nodes fit: no nodes registered"}},
		{name: "fits", snap: Snapshot{Nodes: []model.Node{node("n1", 2000, 4*gi)}},
			asks: []Ask{ask("i1", "a", 500, 512*mi)}, place: map[string]string{"i1": "n1"}},
		{name: "insufficient memory, one node", snap: Snapshot{Nodes: []model.Node{node("n1", 2000, 712*mi)},
			Instances: []model.Instance{running("x", "n1", "b", 0, 512*mi, nil)}},
			asks: []Ask{ask("i1", "a", 0, 512*mi)},
			fail: map[string]string{"i1": "0/1 nodes fit: insufficient memory (need 512Mi, free 200Mi)"}},
		{name: "insufficient cpu", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)},
			Instances: []model.Instance{running("x", "n1", "b", 800, 0, nil)}},
			asks: []Ask{ask("i1", "a", 500, 0)},
			fail: map[string]string{"i1": "0/1 nodes fit: insufficient cpu (need 0.5, free 0.2)"}},
		{name: "terminal instances free their resources", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)},
			Instances: []model.Instance{func() model.Instance {
				in := running("x", "n1", "b", 1000, gi, nil)
				in.Desired, in.Status.State = model.DesiredStop, model.StateStopped
				return in
			}()}},
			asks: []Ask{ask("i1", "a", 1000, gi)}, place: map[string]string{"i1": "n1"}},
		{name: "aggregated reasons", snap: Snapshot{Nodes: []model.Node{node("n1", 100, gi), node("n2", 100, gi), node("n3", 4000, gi, cordoned), node("n4", 4000, gi, down)}},
			asks: []Ask{ask("i1", "a", 500, 0)},
			fail: map[string]string{"i1": "0/4 nodes fit: 2 insufficient cpu (need 0.5, free 0.1), 1 node cordoned, 1 node down"}},
		{name: "driver", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)}},
			asks: []Ask{ask("i1", "a", 0, 0, func(a *Ask) { a.Driver = "oci" })},
			fail: map[string]string{"i1": `0/1 nodes fit: driver "oci" not available`}},
		{name: "runtime", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi, withOCI("runc")), node("n2", 1000, gi, withOCI("runc", "crun"))}},
			asks: []Ask{
				ask("crun", "a", 0, 0, func(a *Ask) { a.Driver, a.Runtime = "oci", "crun" }),
				ask("sandbox", "b", 0, 0, func(a *Ask) { a.Driver, a.Runtime = "oci", "sandbox" }),
				ask("default", "c", 0, 0, func(a *Ask) { a.Driver = "oci" })},
			place: map[string]string{"crun": "n2", "default": "n1"},
			fail:  map[string]string{"sandbox": `0/2 nodes fit: 2 runtime "sandbox" not installed`}},
		{name: "constraints", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi), node("n2", 1000, gi, ssd)}},
			asks: []Ask{
				ask("eq", "a", 0, 0, func(a *Ask) { a.Constraints = []model.Constraint{{Label: "disk", Op: model.OpEquals, Value: "ssd"}} }),
				ask("ne", "b", 0, 0, func(a *Ask) { a.Constraints = []model.Constraint{{Label: "disk", Op: model.OpNotEquals, Value: "ssd"}} }),
				ask("in", "c", 0, 0, func(a *Ask) {
					a.Constraints = []model.Constraint{{Label: "zone", Op: model.OpIn, Values: []string{"a", "b"}}}
				}),
				ask("no", "d", 0, 0, func(a *Ask) {
					a.Constraints = []model.Constraint{{Label: "zone", Op: model.OpIn, Values: []string{"z"}}}
				}),
			},
			place: map[string]string{"eq": "n2", "ne": "n1", "in": "n2"},
			fail:  map[string]string{"no": "0/2 nodes fit: 2 constraint zone in [z] not met"}},
		{name: "one call accounts earlier placements", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)}},
			asks:  []Ask{ask("i1", "a", 600, 0), ask("i2", "a", 600, 0)},
			place: map[string]string{"i1": "n1"},
			fail:  map[string]string{"i2": "0/1 nodes fit: insufficient cpu (need 0.6, free 0.4)"}},
		{name: "spread across nodes", snap: Snapshot{Nodes: []model.Node{node("n1", 4000, 4*gi), node("n2", 4000, 4*gi), node("n3", 4000, 4*gi)}},
			asks:  []Ask{ask("i1", "a", 100, 0), ask("i2", "a", 100, 0), ask("i3", "a", 100, 0)},
			place: map[string]string{"i1": "n1", "i2": "n2", "i3": "n3"}},
		{name: "binpack fills one node", snap: Snapshot{Nodes: []model.Node{node("n1", 4000, 4*gi), node("n2", 4000, 4*gi)},
			Instances: []model.Instance{running("x", "n2", "b", 1000, gi, nil)}},
			asks: []Ask{ask("i1", "a", 100, 0, func(a *Ask) { a.Strategy = model.StrategyBinpack }),
				ask("i2", "a", 100, 0, func(a *Ask) { a.Strategy = model.StrategyBinpack })},
			place: map[string]string{"i1": "n2", "i2": "n2"}},
		{name: "assigned ports skip used ones", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)},
			Instances: []model.Instance{running("x", "n1", "b", 0, 0, map[string]int{"http": 20000, "x": 20002})}},
			asks: []Ask{
				ask("i1", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80}, model.PortSpec{Name: "admin", ContainerPort: 81})),
				ask("i2", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80})),
			},
			place: map[string]string{"i1": "n1", "i2": "n1"},
			ports: map[string]map[string]int{"i1": {"http": 20001, "admin": 20003}, "i2": {"http": 20004}}},
		{name: "ports in use on the host are not assigned", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi, func(n *model.Node) { n.PortsInUse = []int{20000, 20001, 8080} })}},
			asks: []Ask{ask("i1", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80})),
				ask("i2", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80, HostPort: 8080}))},
			place: map[string]string{"i1": "n1"},
			ports: map[string]map[string]int{"i1": {"http": 20002}},
			fail:  map[string]string{"i2": "0/1 nodes fit: host port 8080 in use"}},
		{name: "fixed host port conflicts", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi)},
			Instances: []model.Instance{running("x", "n1", "b", 0, 0, map[string]int{"http": 8080})}},
			asks: []Ask{ask("i1", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80, HostPort: 8080, Protocol: "tcp"}))},
			fail: map[string]string{"i1": "0/1 nodes fit: host port 8080 in use"}},
		{name: "fixed host port counts within one call", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi), node("n2", 1000, gi)}},
			asks: []Ask{ask("i1", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80, HostPort: 8080})),
				ask("i2", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80, HostPort: 8080})),
				ask("i3", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80, HostPort: 8080}))},
			place: map[string]string{"i1": "n1", "i2": "n2"},
			ports: map[string]map[string]int{"i1": {"http": 8080}, "i2": {"http": 8080}},
			fail:  map[string]string{"i3": "0/2 nodes fit: 2 host port 8080 in use"}},
		{name: "port range exhausted", snap: Snapshot{Nodes: []model.Node{node("n1", 1000, gi, func(n *model.Node) { n.PortRange = [2]int{30000, 30001} })},
			Instances: []model.Instance{running("x", "n1", "b", 0, 0, map[string]int{"a": 30000, "b": 30001})}},
			asks: []Ask{ask("i1", "a", 0, 0, withPorts(model.PortSpec{Name: "http", ContainerPort: 80}))},
			fail: map[string]string{"i1": "0/1 nodes fit: no free host ports in range"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Schedule(tc.snap, tc.asks)
			gotPlace := map[string]string{}
			for _, p := range plan.Placements {
				gotPlace[p.InstanceID] = p.Node
				if want, ok := tc.ports[p.InstanceID]; ok && !reflect.DeepEqual(p.HostPorts, want) {
					t.Errorf("%s ports %v, want %v", p.InstanceID, p.HostPorts, want)
				}
			}
			gotFail := map[string]string{}
			for _, f := range plan.Failures {
				gotFail[f.InstanceID] = f.Reason
			}
			if len(tc.place) == 0 {
				tc.place = map[string]string{}
			}
			if len(tc.fail) == 0 {
				tc.fail = map[string]string{}
			}
			if !reflect.DeepEqual(gotPlace, tc.place) {
				t.Errorf("placements %v, want %v", gotPlace, tc.place)
			}
			if !reflect.DeepEqual(gotFail, tc.fail) {
				t.Errorf("failures %v, want %v", gotFail, tc.fail)
			}
		})
	}
}

func TestScheduleIsDeterministic(t *testing.T) {
	var nodes []model.Node
	for i := 9; i >= 0; i-- {
		nodes = append(nodes, node(fmt.Sprintf("n%d", i), 4000, 4*gi))
	}
	var asks []Ask
	for i := 0; i < 30; i++ {
		asks = append(asks, ask(fmt.Sprintf("i%d", i), fmt.Sprintf("app%d", i%3), 100, 64*mi))
	}
	first := Schedule(Snapshot{Nodes: nodes}, asks)
	for i := 0; i < 5; i++ {
		if again := Schedule(Snapshot{Nodes: nodes}, asks); !reflect.DeepEqual(first, again) {
			t.Fatal("same input, different plan")
		}
	}
}
