package model

import "fmt"

// NetworkPeer names who may reach an app from another network (see
// AppSpec.AllowFrom and docs/network.md, "Isolation"): every app of
// Network, or one app (App in Namespace).
type NetworkPeer struct {
	// Network grants every app of this network.
	Network string `json:"network,omitempty"`
	// App grants one app; it excludes Network.
	App string `json:"app,omitempty"`
	// Namespace is App's namespace; empty means the granting app's. Only
	// with App.
	Namespace string `json:"namespace,omitempty"`
}

// maxAllowFrom bounds AllowFrom.
const maxAllowFrom = 64

// EffectiveNetwork is the network the app's instances belong to: Network,
// or the namespace's name when Network is empty.
func (s *AppSpec) EffectiveNetwork() string {
	if s.Network != "" {
		return s.Network
	}
	if s.Namespace == "" {
		return DefaultNamespace
	}
	return s.Namespace
}

// normalizeNetwork drops a Network equal to the namespace (the default),
// so spelling the default out makes no new revision.
func (s *AppSpec) normalizeNetwork() {
	if s.Network == s.Namespace {
		s.Network = ""
	}
}

// Grants reports whether the app allows traffic from app srcApp of
// namespace srcNS on network srcNet through AllowFrom.
func (s *AppSpec) Grants(srcNet, srcNS, srcApp string) bool {
	for _, p := range s.AllowFrom {
		switch {
		case p.Network != "" && p.Network == srcNet:
			return true
		case p.App != "" && p.App == srcApp && p.NamespaceOr(s.Namespace) == srcNS:
			return true
		}
	}
	return false
}

// NamespaceOr is the peer's namespace, or ns when it names none.
func (p NetworkPeer) NamespaceOr(ns string) string {
	if p.Namespace != "" {
		return p.Namespace
	}
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// network checks spec.network and spec.allowFrom.
func (v *validator) network(s *AppSpec) {
	v.dns("network", s.Network, 63, false)
	if len(s.AllowFrom) > maxAllowFrom {
		v.add("allowFrom", "must have at most %d entries, got %d", maxAllowFrom, len(s.AllowFrom))
	}
	for i, p := range s.AllowFrom {
		f := fmt.Sprintf("allowFrom[%d]", i)
		switch {
		case p.Network == "" && p.App == "":
			v.add(f, "must name a network or an app")
		case p.Network != "" && p.App != "":
			v.add(f, "must name either a network or an app, not both")
		case p.Network != "" && p.Namespace != "":
			v.add(f+".namespace", "is only allowed with app (a network spans namespaces)")
		}
		v.dns(f+".network", p.Network, 63, false)
		v.dns(f+".app", p.App, 63, false)
		v.dns(f+".namespace", p.Namespace, 63, false)
	}
}
