// Package agent runs the instances assigned to one node. It registers the
// node and heartbeats, watches the store for instances placed on it, and
// drives each through a state machine with a driver (see runner.go). After
// a restart it reattaches to the workloads that are still running instead
// of restarting them. It owns Instance.Status and its Node object.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Options are the agent's dependencies and settings.
type Options struct {
	Store store.Store
	// Drivers by name ("docker"); only those whose Available passes are
	// advertised.
	Drivers map[string]driver.Driver
	// NodeName defaults to the hostname.
	NodeName string
	Address  string
	Labels   map[string]string
	// WorkloadLabels are added to every workload this agent starts (e.g.
	// an operator's cost-centre tag, or berth.test=1 in tests).
	WorkloadLabels map[string]string
	// Capacity overrides the detected capacity when non-zero.
	Capacity  model.Resources
	PortRange [2]int
	Events    *events.Recorder
	Log       *slog.Logger
	// Heartbeat interval (default DefaultHeartbeat).
	Heartbeat time.Duration
	Version   string
	// SkipPortScan leaves PortsInUse empty instead of reading the host's
	// listening ports: for simulated agents sharing one host (berth bench
	// cluster), whose ports are not their own.
	SkipPortScan bool
	// Secrets resolves an app's imagePullSecret; nil means this agent has
	// no access to secrets and such apps fail to start with that message.
	Secrets SecretSource
	// Now is the agent's clock (default time.Now); tests skew it to show
	// that the server judges liveness by its own clock.
	Now func() time.Time
	// AgentAPI is advertised in the node object: host:port of this
	// agent's own endpoint (internal/agentapi); empty for none.
	AgentAPI string
}

// SecretSource reads a secret's values.
type SecretSource interface {
	Get(ctx context.Context, ns, name string) (map[string]string, error)
}

// DefaultHeartbeat is how often the agent writes its node object; the
// node controller's thresholds are a few of these. The server may ask for
// a longer interval in large clusters (model.HeartbeatInterval).
const DefaultHeartbeat = model.BaseHeartbeat

// Agent is one node's agent.
type Agent struct {
	o       Options
	drivers map[string]driver.Driver

	mu      sync.Mutex
	runners map[string]*runner // by instance ID
	specs   map[string]*model.AppSpec
	wg      sync.WaitGroup
	status  *statusWriter
}

// New makes an agent; call Run to start it.
func New(o Options) *Agent {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.PortRange == [2]int{} {
		o.PortRange = model.DefaultPortRange
	}
	return &Agent{o: o, runners: map[string]*runner{}, specs: map[string]*model.AppSpec{}, status: &statusWriter{st: o.Store}}
}

// Node returns the agent's node name (after Run has started).
func (a *Agent) Node() string { return a.o.NodeName }

// Run registers the node, reattaches to running workloads and runs
// instances until ctx ends. Workloads keep running when it returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.register(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)
	existing := a.listWorkloads(ctx)
	objs, rev, err := store.ListJSON[model.Instance](ctx, a.o.Store, model.PrefixInstances)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, o := range objs {
		if o.Value.Node == a.o.NodeName {
			known[o.Value.ID] = true
			a.observe(ctx, o, existing[o.Value.ID])
		}
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.removeOrphans(ctx, existing, known)
	}()
	for ctx.Err() == nil {
		ch, err := a.o.Store.Watch(ctx, model.PrefixInstances, rev)
		if err != nil {
			a.o.Log.Warn("agent watch", "err", err)
			if rev, err = a.resync(ctx); err != nil {
				ctxsleep.Sleep(ctx, time.Second)
			}
			continue
		}
		for ev := range ch {
			rev = ev.KV.ModRev
			a.handle(ctx, ev)
		}
		if ctx.Err() == nil { // dropped: re-list to catch up
			if r, err := a.resync(ctx); err == nil {
				rev = r
			}
		}
	}
	a.wg.Wait()
	return nil
}

// resync re-reads every instance after a lost watch.
func (a *Agent) resync(ctx context.Context) (int64, error) {
	objs, rev, err := store.ListJSON[model.Instance](ctx, a.o.Store, model.PrefixInstances)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, o := range objs {
		if o.Value.Node == a.o.NodeName {
			seen[o.Value.ID] = true
			a.observe(ctx, o, nil)
		}
	}
	a.mu.Lock()
	for id, r := range a.runners {
		if !seen[id] {
			r.markDeleted()
		}
	}
	a.mu.Unlock()
	return rev, nil
}

func (a *Agent) handle(ctx context.Context, ev store.Event) {
	if ev.Type == store.EventDelete {
		// Instance keys end in the instance ID (model.InstanceKey).
		a.mu.Lock()
		if r, ok := a.runners[path.Base(ev.KV.Key)]; ok && r.key == ev.KV.Key {
			r.markDeleted()
		}
		a.mu.Unlock()
		return
	}
	in, err := decodeInstance(ev.KV.Value)
	if err != nil || in.Node != a.o.NodeName {
		return
	}
	a.observe(ctx, store.Object[model.Instance]{Value: in, ModRev: ev.KV.ModRev}, nil)
}

// observe hands the latest stored instance to its runner, starting one
// if needed. w is the reattached workload, if any.
func (a *Agent) observe(ctx context.Context, o store.Object[model.Instance], w *workload) {
	in := o.Value
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.runners[in.ID]
	if !ok {
		if in.Desired == model.DesiredStop && in.Terminal() && w == nil {
			return // finished before we saw it; nothing to do
		}
		r = newRunner(a, o, w)
		a.runners[in.ID] = r
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			r.run(ctx)
			a.mu.Lock()
			if a.runners[in.ID] == r {
				delete(a.runners, in.ID)
			}
			a.mu.Unlock()
		}()
		return
	}
	r.update(o)
}

// workload is a runtime object found at start, with the driver running it.
type workload struct {
	driver string
	status driver.Status
}

// listWorkloads returns this node's workloads by instance ID.
func (a *Agent) listWorkloads(ctx context.Context) map[string]*workload {
	out := map[string]*workload{}
	for name, d := range a.drivers {
		list, err := d.List(ctx)
		if err != nil {
			a.o.Log.Warn("list workloads", "driver", name, "err", err)
			continue
		}
		for _, st := range list {
			// Only this node's workloads: another berth on the same host
			// (a second node, a test, a benchmark) owns its own.
			if st.InstanceID == "" || st.Labels[driver.LabelNode] != a.o.NodeName {
				continue
			}
			if prev, ok := out[st.InstanceID]; ok && prev.status.State == driver.StateRunning {
				continue
			}
			out[st.InstanceID] = &workload{driver: name, status: st}
		}
	}
	return out
}

// removeOrphans stops and removes, in parallel, this node's workloads
// whose instance no longer exists.
func (a *Agent) removeOrphans(ctx context.Context, existing map[string]*workload, known map[string]bool) {
	var wg sync.WaitGroup
	for id, w := range existing {
		if known[id] {
			continue
		}
		wg.Add(1)
		go func(id string, d driver.Driver, st driver.Status) {
			defer wg.Done()
			a.o.Log.Info("removing orphaned workload", "instance", id, "id", st.ID)
			_ = d.Stop(ctx, st.ID, model.DefaultStopGracePeriod)
			if err := d.Remove(ctx, st.ID); err != nil {
				a.o.Log.Warn("remove orphaned workload", "id", st.ID, "err", err)
				return
			}
			a.o.Events.Record(ctx, model.Event{Reason: "OrphanRemoved", Node: a.o.NodeName, Instance: id,
				Namespace: st.Labels[driver.LabelNamespace], App: st.Labels[driver.LabelApp],
				Message: "removed workload " + shortID(st.ID) + " whose instance no longer exists"})
		}(id, a.drivers[w.driver], w.status)
	}
	wg.Wait()
}

// spec returns the template of an instance's revision (immutable, cached).
func (a *Agent) spec(ctx context.Context, in *model.Instance) (*model.AppSpec, error) {
	key := model.RevisionKey(in.Namespace, in.App, in.Revision)
	a.mu.Lock()
	s, ok := a.specs[key]
	a.mu.Unlock()
	if ok {
		return s, nil
	}
	o, err := store.GetJSON[model.Revision](ctx, a.o.Store, key)
	if err != nil {
		return nil, fmt.Errorf("read revision %d of %s: %w", in.Revision, in.App, err)
	}
	a.mu.Lock()
	a.specs[key] = &o.Value.Spec
	a.mu.Unlock()
	return &o.Value.Spec, nil
}

// InstanceLogs streams an instance's logs from its driver (api.LogSource).
func (a *Agent) InstanceLogs(ctx context.Context, in model.Instance, follow bool, tail int) (io.ReadCloser, error) {
	if in.Node != a.o.NodeName {
		return nil, fmt.Errorf("instance %s runs on node %s, not %s", in.ID, in.Node, a.o.NodeName)
	}
	spec, err := a.spec(ctx, &in)
	if err != nil {
		return nil, err
	}
	d, ok := a.drivers[spec.Driver]
	if !ok {
		return nil, fmt.Errorf("driver %q not available on node %s", spec.Driver, a.o.NodeName)
	}
	return d.Logs(ctx, in.Status.ContainerID, driver.LogOptions{Follow: follow, Tail: tail})
}

// register writes the node object with a fresh fingerprint, keeping what
// operators set (labels added later, cordon).
func (a *Agent) register(ctx context.Context) error {
	fp := Detect()
	if a.o.NodeName == "" {
		a.o.NodeName = fp.Hostname
	}
	if a.o.Capacity.CPU != 0 {
		fp.Capacity.CPU = a.o.Capacity.CPU
	}
	if a.o.Capacity.Memory != 0 {
		fp.Capacity.Memory = a.o.Capacity.Memory
	}
	a.drivers = map[string]driver.Driver{}
	var names, runtimes []string
	defaultRuntime := ""
	for name, d := range a.o.Drivers {
		if err := d.Available(ctx); err != nil {
			a.o.Log.Warn("driver not available", "driver", name, "err", err)
			continue
		}
		a.drivers[name] = d
		names = append(names, name)
		if rl, ok := d.(driver.RuntimeLister); ok {
			for _, r := range rl.Runtimes() {
				runtimes = append(runtimes, model.RuntimeName(r))
			}
			defaultRuntime = model.RuntimeName(rl.DefaultRuntime())
		}
	}
	sort.Strings(names)
	sort.Strings(runtimes)
	if len(names) == 0 {
		return errors.New("no driver is available on this node (is the Docker Engine running and reachable?)")
	}
	node := model.Node{Name: a.o.NodeName, Hostname: fp.Hostname, Address: a.o.Address, AgentAPI: a.o.AgentAPI, Labels: a.o.Labels,
		Capacity: fp.Capacity, Drivers: names, Runtimes: runtimes, DefaultRuntime: defaultRuntime,
		PortRange: a.o.PortRange, Status: model.NodeReady,
		PortsInUse: a.portsInUse(),
		Version:    a.o.Version, LastHeartbeat: a.now()}
	fp.Apply(&node)
	key := model.NodeKey(node.Name)
	cur, err := store.GetJSON[model.Node](ctx, a.o.Store, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		node.Cordoned, node.Draining = cur.Value.Cordoned, cur.Value.Draining
		if cur.Value.Status == model.NodeDown {
			node.Status = model.NodeDown // the node controller lifts it
		}
		if node.Labels == nil {
			node.Labels = cur.Value.Labels
		}
	}
	if _, err := store.PutJSON(ctx, a.o.Store, key, node, cur.ModRev); err != nil {
		return fmt.Errorf("register node %s: %w", node.Name, err)
	}
	a.o.Log.Info("node registered", "node", node.Name, "cpu", node.Capacity.CPU.String(),
		"memory", node.Capacity.Memory.Human(), "drivers", names, "runtimes", runtimes)
	return nil
}

// portsInUse are the host's listening ports in the node's range.
func (a *Agent) portsInUse() []int {
	if a.o.SkipPortScan {
		return nil
	}
	return listeningPorts(a.o.PortRange[0], a.o.PortRange[1])
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (a *Agent) now() time.Time { return a.o.Now() }
