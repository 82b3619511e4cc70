package scheduler

import "github.com/berth-dev/berth/internal/model"

// appIndex counts one app's resource-holding instances per node and,
// on demand, per value of an attribute. It is built once per Schedule
// call and kept current as the call places instances.
type appIndex struct {
	s       *scheduler
	perNode []int32
	total   int
	// byValue maps field → value → count; a node without the attribute
	// counts under missingValue.
	byValue map[string]map[string]int
}

// missingValue is the key nodes without an attribute count under.
const missingValue = "\x00"

// app returns the index of namespace/name, building it on first use.
func (s *scheduler) app(ns, name string) *appIndex {
	k := appKey(ns, name)
	if ix, ok := s.apps[k]; ok {
		return ix
	}
	ix := &appIndex{s: s, perNode: make([]int32, len(s.nodes)), byValue: map[string]map[string]int{}}
	for _, n := range s.placed[k] {
		ix.perNode[n]++
	}
	ix.total = len(s.placed[k])
	s.apps[k] = ix
	return ix
}

// values returns the counts per value of field, building them on first
// use.
func (ix *appIndex) values(field string) map[string]int {
	if m, ok := ix.byValue[field]; ok {
		return m
	}
	m := map[string]int{}
	if ix.total > 0 {
		for i, c := range ix.perNode {
			if c > 0 {
				m[valueOf(ix.s.nodes[i], field)] += int(c)
			}
		}
	}
	ix.byValue[field] = m
	return m
}

// countAt is how many instances run where node n's value of field is.
func (ix *appIndex) countAt(n *nodeState, field string) int {
	if field == model.FieldHostname {
		return int(ix.perNode[n.idx])
	}
	return ix.values(field)[valueOf(n, field)]
}

// add records an instance placed on n.
func (ix *appIndex) add(n *nodeState) {
	ix.perNode[n.idx]++
	ix.total++
	for field, m := range ix.byValue {
		m[valueOf(n, field)]++
	}
}

// valueOf is the node's value of field, or missingValue.
func valueOf(n *nodeState, field string) string {
	if v, ok := n.node.Attribute(field); ok {
		return v
	}
	return missingValue
}
