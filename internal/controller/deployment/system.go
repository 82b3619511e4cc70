package deployment

import (
	"fmt"
	"sort"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/scheduler"
)

// decideSystem runs exactly one instance of the current revision on every
// ready, uncordoned node that matches the app (driver, runtime, GPUs and
// the constraints that depend only on the node). Each instance is pinned
// to its node (Instance.TargetNode); the placement loop still reserves
// its resources and ports there and explains when they do not fit.
//
// A cordoned node keeps its instance but gets no new one; a node that no
// longer matches loses it. A new revision replaces instances one node at
// a time: stop the old one, then create the new one on that node once the
// old is no longer active (its host ports are usually fixed), and go on
// once every new instance is ready.
func decideSystem(d Decision, app *model.App, cur, old []*model.Instance, nodes map[string]*model.Node) Decision {
	ask := scheduler.AskFor(&app.Spec, &model.Instance{Namespace: app.Namespace, App: app.Name, Resources: app.Spec.Resources})
	curOn, oldOn := byNode(cur), byNode(old)
	names := make([]string, 0, len(nodes))
	for name := range nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	keep := map[string]string{} // node → why it cannot keep an instance ("" = it can)
	for _, name := range names {
		n := nodes[name]
		keep[name] = scheduler.MatchesNode(n, &ask)
	}
	stop := func(ins []*model.Instance, reason string) {
		for _, in := range ins {
			d.Stop = append(d.Stop, Stop{ID: in.ID, Reason: reason})
		}
	}
	// Instances on nodes that are gone from the set or no longer match.
	for _, on := range []map[string][]*model.Instance{curOn, oldOn} {
		for _, name := range sortedKeys(on) {
			why, known := keep[name]
			switch {
			case name == "":
				stop(on[name], "system app instances are pinned to a node")
			case !known:
				stop(on[name], fmt.Sprintf("node %s left the cluster", name))
			case why != "":
				stop(on[name], fmt.Sprintf("node %s no longer matches: %s", name, why))
			}
		}
	}
	hasHealth := app.Spec.Health != nil
	allReady := true
	var replace []string // nodes with an old instance and no new one
	for _, name := range names {
		if keep[name] != "" {
			continue
		}
		n := nodes[name]
		switch c := curOn[name]; {
		case len(c) > 1:
			for _, in := range pickToStop(c, len(c)-1, hasHealth) {
				d.Stop = append(d.Stop, Stop{ID: in.ID, Reason: "one instance per node"})
			}
		case len(c) == 1:
			if !c[0].Ready(hasHealth) {
				allReady = false
			}
			stop(oldOn[name], fmt.Sprintf("replaced by revision %d", app.Revision))
			continue
		}
		if len(curOn[name]) > 0 {
			continue
		}
		switch {
		case n.Status != model.NodeReady || n.Cordoned:
			// No new instance; an old one keeps running.
		case len(oldOn[name]) > 0:
			replace = append(replace, name)
		default:
			d.CreateOn = append(d.CreateOn, name)
		}
	}
	if len(replace) > 0 {
		if !allReady || len(d.CreateOn) > 0 { // a new instance is not ready yet
			d.Waiting = fmt.Sprintf("waiting for revision %d to become ready before replacing the instance on %s", app.Revision, replace[0])
		} else {
			stop(oldOn[replace[0]], fmt.Sprintf("replaced by revision %d", app.Revision))
		}
	}
	return d
}

// byNode groups instances by the node they are pinned to (TargetNode, or
// Node for instances placed before pinning).
func byNode(ins []*model.Instance) map[string][]*model.Instance {
	out := map[string][]*model.Instance{}
	for _, in := range ins {
		k := in.TargetNode
		if k == "" {
			k = in.Node
		}
		out[k] = append(out[k], in)
	}
	return out
}

func sortedKeys(m map[string][]*model.Instance) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
