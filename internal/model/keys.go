package model

import (
	"fmt"
	"strings"
)

// Store key prefixes. Every object lives under one of these.
const (
	PrefixApps       = "/apps/"
	PrefixRevisions  = "/revisions/"
	PrefixInstances  = "/instances/"
	PrefixNodes      = "/nodes/"
	PrefixPlacements = "/placements/"
	PrefixEvents     = "/events/"
	PrefixMeta       = "/meta/"
	// PrefixSubnets holds node subnet allocations: /subnets/<a.b.c.d-n>
	// → node name (the CIDR with "/" replaced by "-").
	PrefixSubnets = "/subnets/"
)

// AppKey is where an app is stored.
func AppKey(ns, name string) string { return PrefixApps + ns + "/" + name }

// RevisionPrefix holds every revision of one app.
func RevisionPrefix(ns, app string) string { return PrefixRevisions + ns + "/" + app + "/" }

// RevisionKey is where one revision is stored; numbers are zero-padded so
// keys sort by number.
func RevisionKey(ns, app string, n int64) string {
	return fmt.Sprintf("%s%010d", RevisionPrefix(ns, app), n)
}

// InstancePrefix holds every instance of one app.
func InstancePrefix(ns, app string) string { return PrefixInstances + ns + "/" + app + "/" }

// InstanceKey is where an instance is stored.
func InstanceKey(ns, app, id string) string { return InstancePrefix(ns, app) + id }

// Key is where the instance is stored.
func (i *Instance) Key() string { return InstanceKey(i.Namespace, i.App, i.ID) }

// NodeKey is where a node is stored.
func NodeKey(name string) string { return PrefixNodes + name }

// PlacementKey is bumped by every plan that places onto the node, so two
// plans built from the same snapshot cannot both commit (see scheduler).
func PlacementKey(node string) string { return PrefixPlacements + node }

// EventKey is where an event is stored.
func EventKey(seq int64) string { return fmt.Sprintf("%s%016d", PrefixEvents, seq) }

// SubnetKey is where the allocation of node subnet cidr (e.g.
// "10.90.3.0/24") is stored; its value is the holding node's name.
func SubnetKey(cidr string) string {
	return PrefixSubnets + strings.ReplaceAll(cidr, "/", "-")
}
