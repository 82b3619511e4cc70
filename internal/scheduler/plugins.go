package scheduler

import (
	"fmt"
	"slices"

	"github.com/berth-dev/berth/internal/model"
)

// filter refuses a node for an ask with a reason, or returns "".
type filter func(n *nodeState, a *Ask) string

// filters run in order; the first refusal is the node's reason.
var filters = []filter{nodeReady, driverAvailable, runtimeInstalled, labelConstraints, enoughCPU, enoughMemory, hostPortsFree}

func nodeReady(n *nodeState, _ *Ask) string {
	switch {
	case n.node.Status != model.NodeReady:
		return "node " + orDash(n.node.Status)
	case n.node.Cordoned:
		return "node cordoned"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "not ready"
	}
	return s
}

func driverAvailable(n *nodeState, a *Ask) string {
	d := a.Driver
	if d == "" {
		d = model.DefaultDriver
	}
	if !n.node.HasDriver(d) {
		return fmt.Sprintf("driver %q not available", d)
	}
	return ""
}

func runtimeInstalled(n *nodeState, a *Ask) string {
	if a.Runtime != "" && !n.node.HasRuntime(a.Runtime) {
		return fmt.Sprintf("runtime %q not installed", a.Runtime)
	}
	return ""
}

func labelConstraints(n *nodeState, a *Ask) string {
	for _, c := range a.Constraints {
		v, has := n.node.Labels[c.Label]
		ok := false
		switch c.Op {
		case model.OpEquals:
			ok = has && v == c.Value
		case model.OpNotEquals:
			ok = !has || v != c.Value
		case model.OpIn:
			ok = has && slices.Contains(c.Values, v)
		}
		if !ok {
			want := c.Value
			if c.Op == model.OpIn {
				want = fmt.Sprint(c.Values)
			}
			return fmt.Sprintf("constraint %s %s %s not met", c.Label, c.Op, want)
		}
	}
	return ""
}

func enoughCPU(n *nodeState, a *Ask) string {
	if a.Resources.CPU > 0 && a.Resources.CPU > n.freeCPU() {
		return fmt.Sprintf("insufficient cpu (need %s, free %s)", a.Resources.CPU, max(n.freeCPU(), 0))
	}
	return ""
}

func enoughMemory(n *nodeState, a *Ask) string {
	if a.Resources.Memory > 0 && a.Resources.Memory > n.freeMem() {
		return fmt.Sprintf("insufficient memory (need %s, free %s)", a.Resources.Memory, max(n.freeMem(), 0))
	}
	return ""
}

func hostPortsFree(n *nodeState, a *Ask) string {
	for _, p := range a.Ports {
		if p.HostPort > 0 && n.ports[p.HostPort] {
			return fmt.Sprintf("host port %d in use", p.HostPort)
		}
	}
	if n.freePortCount() < len(a.Ports) {
		return "no free host ports in range"
	}
	return ""
}

// scorer rates a fitting node; higher is better.
type scorer func(n *nodeState, a *Ask) float64

func scorerFor(strategy string) scorer {
	if strategy == model.StrategyBinpack {
		return binpack
	}
	return spread
}

// freeFraction is the node's mean free share of cpu and memory after the
// ask would be placed.
func freeFraction(n *nodeState, a *Ask) float64 {
	frac := func(free, total int64) float64 {
		if total <= 0 {
			return 0
		}
		return float64(free) / float64(total)
	}
	c := frac(int64(n.freeCPU()-a.Resources.CPU), int64(n.node.Capacity.CPU))
	m := frac(int64(n.freeMem()-a.Resources.Memory), int64(n.node.Capacity.Memory))
	return (c + m) / 2
}

// spread prefers nodes with fewer instances of the same app, then more
// free resources.
func spread(n *nodeState, a *Ask) float64 {
	return -float64(n.apps[a.Namespace+"/"+a.App])*10 + freeFraction(n, a)
}

// binpack prefers the fullest node that fits.
func binpack(n *nodeState, a *Ask) float64 { return -freeFraction(n, a) }
