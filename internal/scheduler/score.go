package scheduler

// score rates a fitting node; compared field by field, higher is better:
// preferred affinity first, then spread across an attribute, then the
// strategy (spread or binpack).
type score struct {
	affinity int
	spread   int
	strategy float64
}

func (s score) better(o score) bool {
	if s.affinity != o.affinity {
		return s.affinity > o.affinity
	}
	if s.spread != o.spread {
		return s.spread > o.spread
	}
	return s.strategy > o.strategy
}

func (pc *askCtx) score(n *nodeState) score {
	var sc score
	for i := range pc.preferred {
		r := &pc.preferred[i]
		if r.target.countAt(n, r.f) > 0 {
			if r.anti {
				sc.affinity--
			} else {
				sc.affinity++
			}
		}
	}
	if pc.hasSpread {
		sc.spread = -pc.self.countAt(n, pc.spread)
	}
	if pc.binpack {
		sc.strategy = -freeFraction(n, pc.a)
	} else {
		// Fewest instances of the app on the node, then most free.
		sc.strategy = -float64(pc.self.perNode[n.idx])*10 + freeFraction(n, pc.a)
	}
	return sc
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
	c := frac(int64(n.freeCPU()-a.Resources.CPU), int64(n.capCPU))
	m := frac(int64(n.freeMem()-a.Resources.Memory), int64(n.capMem))
	return (c + m) / 2
}
