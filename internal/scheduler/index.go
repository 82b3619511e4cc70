package scheduler

// fieldIndex interns one field's node values: ids[node idx] is the id of
// the node's value, names[id] the value. Id 0 is "no such attribute".
type fieldIndex struct {
	name  string
	ids   []int32
	names []string
	// nodes lists the nodes per value id, built on first use.
	nodes [][]*nodeState
}

// missing is the value id of nodes without the attribute.
const missing = 0

// field returns the interned values of field, building them on first use.
func (s *scheduler) field(name string) *fieldIndex {
	if fi, ok := s.fields[name]; ok {
		return fi
	}
	fi := &fieldIndex{name: name, ids: make([]int32, len(s.nodes)), names: []string{""}}
	byValue := map[string]int32{}
	for i, n := range s.nodes {
		v, ok := n.node.Attribute(name)
		if !ok {
			continue
		}
		id, seen := byValue[v]
		if !seen {
			id = int32(len(fi.names))
			byValue[v] = id
			fi.names = append(fi.names, v)
		}
		fi.ids[i] = id
	}
	if s.fields == nil {
		s.fields = map[string]*fieldIndex{}
	}
	s.fields[name] = fi
	return fi
}

// appIndex counts one app's resource-holding instances per node and,
// on demand, per value of a field. It is built once per Schedule call
// and kept current as the call places instances.
type appIndex struct {
	s       *scheduler
	perNode []int32
	total   int
	// byValue holds, per field, the count per value id.
	byValue map[*fieldIndex][]int32
}

// app returns the index of namespace/name, building it on first use.
func (s *scheduler) app(ns, name string) *appIndex {
	k := appKey(ns, name)
	if ix, ok := s.apps[k]; ok {
		return ix
	}
	ix := &appIndex{s: s, perNode: make([]int32, len(s.nodes)), byValue: map[*fieldIndex][]int32{}}
	for _, n := range s.placed[k] {
		ix.perNode[n]++
	}
	ix.total = len(s.placed[k])
	s.apps[k] = ix
	return ix
}

// values returns the counts per value id of field, building them on
// first use.
func (ix *appIndex) values(f *fieldIndex) []int32 {
	if m, ok := ix.byValue[f]; ok {
		return m
	}
	m := make([]int32, len(f.names))
	if ix.total > 0 {
		for i, c := range ix.perNode {
			m[f.ids[i]] += c
		}
	}
	ix.byValue[f] = m
	return m
}

// countAt is how many instances run where node n's value of f is.
func (ix *appIndex) countAt(n *nodeState, f *fieldIndex) int {
	if f == nil { // hostname: the node itself
		return int(ix.perNode[n.idx])
	}
	return int(ix.values(f)[f.ids[n.idx]])
}

// add records an instance placed on n.
func (ix *appIndex) add(n *nodeState) {
	ix.perNode[n.idx]++
	ix.total++
	for f, m := range ix.byValue {
		m[f.ids[n.idx]]++
	}
}

// mostCommon is the value with the most instances of ix (ties: the
// smallest), or "" when there is none.
func (ix *appIndex) mostCommon(f *fieldIndex) string {
	best, bestN := "", int32(0)
	for id, n := range ix.values(f) {
		if id == missing {
			continue
		}
		if v := f.names[id]; n > bestN || (n == bestN && n > 0 && v < best) {
			best, bestN = v, n
		}
	}
	return best
}
