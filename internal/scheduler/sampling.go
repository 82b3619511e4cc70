package scheduler

import "sort"

// Sampling: on a large cluster an ask whose score needs no global view
// (the default spread strategy, without spread or preferred affinity)
// stops after finding a window of fitting nodes, as Kubernetes'
// percentageOfNodesToScore does. Each scan starts where the previous one
// stopped, so asks still cover every node in turn. The window is
// deterministic: it depends only on the call's inputs. Clusters of up to
// minWindow nodes are always scanned whole.
const (
	minWindow        = 100
	minWindowPercent = 5
)

// window is how many fitting nodes are enough among candidates.
func window(candidates int) int {
	pct := max(50-candidates/125, minWindowPercent)
	return max(candidates*pct/100, minWindow)
}

// sampled reports whether pc may stop at a window of fitting nodes.
func sampled(candidates int, pc *askCtx) bool {
	return candidates > minWindow && !pc.binpack && !pc.hasSpread && len(pc.preferred) == 0
}

// window returns how many fitting nodes are enough for pc, 0 for all.
func (s *scheduler) window(candidates int, pc *askCtx) int {
	if !sampled(candidates, pc) || len(pc.groups) > 0 {
		return 0
	}
	return window(candidates)
}

// groupedScan reports whether pc's one GROUP_BY (without a group count)
// can be served value by value (filterGrouped) instead of by a full scan.
func (s *scheduler) groupedScan(candidates int, pc *askCtx) bool {
	return pc.a.Node == "" && sampled(candidates, pc) && len(pc.groups) == 1 && pc.groups[0].groups == 0
}

// filterGrouped serves a GROUP_BY ask from the values with the fewest
// instances up: the first tier of equally-used values with a fitting node
// is exactly what GROUP_BY keeps, so the other values' nodes are never
// looked at. Within the tier it stops at limit fitting nodes.
func (s *scheduler) filterGrouped(static []string, pc *askCtx, limit int) []*nodeState {
	g := pc.groups[0]
	counts := pc.self.values(g.f)
	byValue := s.nodesByValue(g.f)
	order := make([]int, 0, len(byValue))
	for id := 1; id < len(byValue); id++ { // id 0: nodes without the field, refused
		order = append(order, id)
	}
	sort.SliceStable(order, func(i, j int) bool { return counts[order[i]] < counts[order[j]] })
	fit := s.fitBuf[:0]
	for i := 0; i < len(order) && len(fit) == 0; {
		tier := counts[order[i]]
		for ; i < len(order) && counts[order[i]] == tier; i++ {
			nodes := byValue[order[i]]
			start := s.cursor % len(nodes)
			for k := range nodes {
				if len(fit) == limit {
					break
				}
				n := nodes[(start+k)%len(nodes)]
				if static[n.idx] == "" && pc.dynamic(n) == "" {
					fit = append(fit, n)
				}
			}
			s.cursor += len(fit)
		}
	}
	s.fitBuf = fit
	return fit
}

// nodesByValue lists the nodes of each value id of f, in name order.
func (s *scheduler) nodesByValue(f *fieldIndex) [][]*nodeState {
	if f.nodes != nil {
		return f.nodes
	}
	f.nodes = make([][]*nodeState, len(f.names))
	for _, n := range s.nodes {
		id := f.ids[n.idx]
		f.nodes[id] = append(f.nodes[id], n)
	}
	return f.nodes
}
