// Package clusterview is the node-readable view of the cluster: a
// redacted projection of apps, instances, nodes and rollouts with only what
// node DNS, the router and network isolation need (no env, images,
// commands, secrets or certificates). The server serves it at
// GET /v1/cluster/view (internal/api); Source reads and watches it from
// an agent and implements the router's and node DNS's source contract.
package clusterview

import (
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/router/table"
)

// View is the redacted cluster state as of store revision Rev. Its
// objects are model types holding only the whitelisted fields that
// Redact copies; everything else is zero.
type View struct {
	Rev       int64            `json:"rev"`
	Apps      []model.App      `json:"apps"`
	Instances []model.Instance `json:"instances"`
	Nodes     []model.Node     `json:"nodes"`
	Rollouts  []model.Rollout  `json:"rollouts,omitempty"`
}

// Line types of a watch stream.
const (
	// LineSnapshot carries a full View.
	LineSnapshot = "snapshot"
	// LineProgress says the stream is alive at revision Rev.
	LineProgress = "progress"
)

// Line is one NDJSON line of GET /v1/cluster/view?watch=true.
type Line struct {
	Type string `json:"type"`
	Rev  int64  `json:"rev"`
	// View is set on snapshot lines.
	View *View `json:"view,omitempty"`
}

// Redact projects s onto what nodes may read. Fields are copied by
// whitelist, so fields added to the model later stay private until they
// are added here. Certificates are never included.
func Redact(s table.Snapshot) View {
	v := View{Rev: s.Rev, Apps: make([]model.App, 0, len(s.Apps)),
		Instances: make([]model.Instance, 0, len(s.Instances)), Nodes: make([]model.Node, 0, len(s.Nodes))}
	for i := range s.Apps {
		v.Apps = append(v.Apps, redactApp(&s.Apps[i]))
	}
	for i := range s.Instances {
		v.Instances = append(v.Instances, redactInstance(&s.Instances[i]))
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		v.Nodes = append(v.Nodes, model.Node{Name: n.Name, Address: n.Address, Status: n.Status, Subnet: n.Subnet, VTEP: n.VTEP})
	}
	for i := range s.Rollouts {
		r := &s.Rollouts[i]
		v.Rollouts = append(v.Rollouts, model.Rollout{Namespace: r.Namespace, App: r.App, Strategy: r.Strategy,
			From: r.From, To: r.To, State: r.State, Traffic: r.Traffic})
	}
	return v
}

// redactApp keeps an app's identity, ports, routes, bindings, driver,
// network and allowFrom (isolation), and whether it has a health check
// (readiness depends on it), not the check.
func redactApp(a *model.App) model.App {
	spec := model.AppSpec{Name: a.Spec.Name, Namespace: a.Spec.Namespace, Ports: a.Spec.Ports,
		Routes: a.Spec.Routes, Bind: a.Spec.Bind, Driver: a.Spec.Driver, Network: a.Spec.Network, AllowFrom: a.Spec.AllowFrom}
	if a.Spec.Health != nil {
		spec.Health = &model.HealthCheck{}
	}
	return model.App{Namespace: a.Namespace, Name: a.Name, Spec: spec, Revision: a.Revision, Deleting: a.Deleting}
}

// redactInstance keeps placement, desired state, host ports and the
// status fields readiness and addressing need.
func redactInstance(in *model.Instance) model.Instance {
	return model.Instance{ID: in.ID, Namespace: in.Namespace, App: in.App, Revision: in.Revision, Node: in.Node,
		Desired: in.Desired, HostPorts: in.HostPorts,
		Status: model.InstanceStatus{State: in.Status.State, Health: in.Status.Health, IP: in.Status.IP}}
}

// Snapshot is v as the router's and node DNS's input.
func (v View) Snapshot() table.Snapshot {
	return table.Snapshot{Rev: v.Rev, Apps: v.Apps, Instances: v.Instances, Nodes: v.Nodes, Rollouts: v.Rollouts}
}
