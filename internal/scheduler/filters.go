package scheduler

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// staticFilter refuses a node for an ask with a reason, or returns "". Its
// answer depends only on the node and the ask's spec, never on what is
// reserved, so one call computes it once per node and spec.
type staticFilter func(c *call, n *nodeState, a *Ask) string

// staticFilters run in order; the first refusal is the node's reason.
// nodeReady must stay first (MatchesNode skips it).
var staticFilters = []staticFilter{nodeReady, driverAvailable, runtimeInstalled, gpuCapacity, staticConstraints}

func nodeReady(_ *call, n *nodeState, _ *Ask) string {
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

func driverAvailable(_ *call, n *nodeState, a *Ask) string {
	d := a.Driver
	if d == "" {
		d = model.DefaultDriver
	}
	if !n.node.HasDriver(d) {
		return fmt.Sprintf("driver %q not available", d)
	}
	return ""
}

func runtimeInstalled(_ *call, n *nodeState, a *Ask) string {
	if a.Runtime != "" && !n.node.HasRuntime(a.Runtime) {
		return fmt.Sprintf("runtime %q not installed", a.Runtime)
	}
	return ""
}

func gpuCapacity(_ *call, n *nodeState, a *Ask) string {
	if a.Resources.GPUs > 0 && a.Resources.GPUs > len(n.node.GPUIndexes()) {
		if len(n.node.GPUIndexes()) == 0 {
			return "no gpus"
		}
		return fmt.Sprintf("too few gpus (need %d, has %d)", a.Resources.GPUs, len(n.node.GPUIndexes()))
	}
	return ""
}

// staticConstraints checks the constraints that depend only on the node,
// and that the node has the attribute the others need.
func staticConstraints(c *call, n *nodeState, a *Ask) string {
	for i := range a.Constraints {
		k := &a.Constraints[i]
		if !k.Static() {
			if _, has := n.node.Attribute(k.Target()); !has {
				return fmt.Sprintf("constraint %s %s: node has no %s", model.FieldName(k.Target()), k.Op, model.FieldName(k.Target()))
			}
			continue
		}
		if !c.holds(n.node, k) {
			want := string(k.Value)
			if k.Op == model.OpIn {
				want = fmt.Sprint(k.Values)
			}
			return fmt.Sprintf("constraint %s %s %s not met", model.FieldName(k.Target()), k.Op, want)
		}
	}
	return ""
}

// holds evaluates a static constraint on a node.
func (c *call) holds(n *model.Node, k *model.Constraint) bool {
	v, has := n.Attribute(k.Target())
	switch k.Op {
	case model.OpEquals, model.OpIs, model.OpCluster:
		return has && v == string(k.Value)
	case model.OpNotEquals:
		return !has || v != string(k.Value)
	case model.OpIn:
		for _, w := range k.Values {
			if has && v == w {
				return true
			}
		}
		return false
	case model.OpLike:
		return has && c.match(string(k.Value), v)
	case model.OpUnlike:
		return !has || !c.match(string(k.Value), v)
	}
	return false
}

// staticKey identifies the part of an ask the static filters read.
func staticKey(a *Ask) string {
	var b strings.Builder
	b.WriteString(a.Driver)
	b.WriteByte(0)
	b.WriteString(a.Runtime)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(a.Resources.GPUs))
	for _, k := range a.Constraints {
		b.WriteByte(0)
		b.WriteString(k.Target())
		b.WriteByte(1)
		b.WriteString(k.Op)
		b.WriteByte(1)
		b.WriteString(string(k.Value))
		for _, v := range k.Values {
			b.WriteByte(2)
			b.WriteString(v)
		}
	}
	return b.String()
}

// staticReasons returns the static refusal of every node for a, by node
// index, computed once per distinct staticKey.
func (s *scheduler) staticReasons(a *Ask) []string {
	key := staticKey(a)
	if r, ok := s.static[key]; ok {
		return r
	}
	r := make([]string, len(s.nodes))
	for _, n := range s.nodes {
		for _, f := range staticFilters {
			if reason := f(s.call, n, a); reason != "" {
				r[n.idx] = reason
				break
			}
		}
	}
	s.static[key] = r
	return r
}

// resourcesFit checks cpu, memory, GPUs and host ports.
func resourcesFit(n *nodeState, a *Ask) string {
	if a.Resources.CPU > 0 && a.Resources.CPU > n.freeCPU() {
		return fmt.Sprintf("insufficient cpu (need %s, free %s)", a.Resources.CPU, max(n.freeCPU(), 0))
	}
	if a.Resources.Memory > 0 && a.Resources.Memory > n.freeMem() {
		return fmt.Sprintf("insufficient memory (need %s, free %s)", a.Resources.Memory, max(n.freeMem(), 0))
	}
	if a.Resources.GPUs > len(n.freeGPUs) {
		return fmt.Sprintf("insufficient gpus (need %d, free %d)", a.Resources.GPUs, len(n.freeGPUs))
	}
	for _, p := range a.Ports {
		if p.HostPort > 0 && n.ports[p.HostPort] {
			return fmt.Sprintf("host port %d in use", p.HostPort)
		}
	}
	if len(a.Ports) > 0 && n.freePortCount() < len(a.Ports) {
		return "no free host ports in range"
	}
	return ""
}

// regexpResult is a compiled LIKE/UNLIKE pattern (nil if it does not
// compile, which validation prevents).
type regexpResult struct{ re *regexp.Regexp }

// match reports whether v matches the whole of expr, compiling expr once
// per call.
func (c *call) match(expr, v string) bool {
	r, ok := c.regex[expr]
	if !ok {
		re, err := model.LikePattern(expr)
		if err != nil {
			re = nil
		}
		r = regexpResult{re: re}
		c.regex[expr] = r
	}
	return r.re != nil && r.re.MatchString(v)
}
