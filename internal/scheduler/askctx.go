package scheduler

import (
	"fmt"
	"strconv"

	"github.com/berth-dev/berth/internal/model"
)

// askCtx is one ask prepared against the call's state: its dynamic
// constraints and affinities resolved to interned fields and indexes.
type askCtx struct {
	s      *scheduler
	a      *Ask
	self   *appIndex
	counts []countRule
	groups []groupRule
	// required are affinity filters; preferred are affinity scores.
	required, preferred []affinityRule
	spread              *fieldIndex
	hasSpread           bool
	binpack             bool
}

// countRule is UNIQUE, MAX_PER or a CLUSTER without a value.
type countRule struct {
	f         *fieldIndex // nil: hostname
	name, op  string
	max       int
	cluster   int32 // value id CLUSTER follows; -1 before the first instance
	clusterTo string
}

// groupRule is GROUP_BY with its optional number of groups.
type groupRule struct {
	f      *fieldIndex
	name   string
	groups int
}

// affinityRule is one affinity resolved to the other app's index.
type affinityRule struct {
	target   *appIndex
	app      string
	f        *fieldIndex
	where    string
	anti     bool
	selfBoot bool // affinity to the app itself with no instance yet
}

// fieldFor resolves a field; nil stands for hostname (the node itself).
func (s *scheduler) fieldFor(name string) *fieldIndex {
	if name == model.FieldHostname {
		return nil
	}
	return s.field(name)
}

func (s *scheduler) prepare(a *Ask) *askCtx {
	pc := &askCtx{s: s, a: a, self: s.app(a.Namespace, a.App), binpack: a.Strategy == model.StrategyBinpack}
	if a.Spread != nil {
		pc.spread, pc.hasSpread = s.fieldFor(a.Spread.Field), true
	}
	for i := range a.Constraints {
		k := &a.Constraints[i]
		f := s.fieldFor(k.Target())
		name := model.FieldName(k.Target())
		switch k.Op {
		case model.OpUnique:
			pc.counts = append(pc.counts, countRule{f: f, name: name, op: k.Op, max: 1})
		case model.OpMaxPer:
			n, _ := strconv.Atoi(string(k.Value))
			pc.counts = append(pc.counts, countRule{f: f, name: name, op: k.Op, max: n})
		case model.OpCluster:
			if k.Value == "" {
				r := countRule{f: f, name: name, op: k.Op, cluster: -1}
				if f == nil {
					r.f = s.field(model.FieldHostname)
				}
				if v := pc.self.mostCommon(r.f); v != "" {
					r.clusterTo = v
					for id, name := range r.f.names {
						if id != missing && name == v {
							r.cluster = int32(id)
						}
					}
				}
				pc.counts = append(pc.counts, r)
			}
		case model.OpGroupBy:
			n, _ := strconv.Atoi(string(k.Value))
			if f == nil {
				f = s.field(model.FieldHostname)
			}
			pc.groups = append(pc.groups, groupRule{f: f, name: name, groups: n})
		}
	}
	for _, af := range a.Affinity {
		ns := af.Namespace
		if ns == "" {
			ns = a.Namespace
		}
		r := affinityRule{target: s.app(ns, af.App), app: af.App, f: s.fieldFor(af.AffinityField()),
			where: where(af.AffinityField()), anti: af.Anti}
		r.selfBoot = !af.Anti && ns == a.Namespace && af.App == a.App && r.target.total == 0
		if af.Required {
			pc.required = append(pc.required, r)
		} else {
			pc.preferred = append(pc.preferred, r)
		}
	}
	return pc
}

// dynamic runs the filters that depend on what is reserved.
func (pc *askCtx) dynamic(n *nodeState) string {
	for i := range pc.counts {
		r := &pc.counts[i]
		switch r.op {
		case model.OpUnique:
			if pc.self.countAt(n, r.f) > 0 {
				return "UNIQUE " + r.name + " already used"
			}
		case model.OpMaxPer:
			if pc.self.countAt(n, r.f) >= r.max {
				return fmt.Sprintf("MAX_PER %s %d reached", r.name, r.max)
			}
		case model.OpCluster:
			if r.cluster >= 0 && r.f.ids[n.idx] != r.cluster {
				return fmt.Sprintf("CLUSTER %s: the app runs in %s=%s", r.name, r.name, r.clusterTo)
			}
		}
	}
	for i := range pc.required {
		r := &pc.required[i]
		near := r.target.countAt(n, r.f) > 0
		switch {
		case r.anti && near:
			return fmt.Sprintf("anti-affinity: %s already %s", r.app, r.where)
		case !r.anti && !near && !r.selfBoot:
			return fmt.Sprintf("affinity: no %s %s", r.app, r.where)
		}
	}
	return resourcesFit(n, pc.a)
}

func where(field string) string {
	if field == model.FieldHostname {
		return "on this node"
	}
	return "in this " + model.FieldName(field)
}

// groupBy keeps, for every GROUP_BY rule, the fitting nodes whose value
// has the fewest instances, so instances spread evenly across values.
func (pc *askCtx) groupBy(fit []*nodeState, refused *refusals) []*nodeState {
	for _, g := range pc.groups {
		counts := pc.self.values(g.f)
		seen := make([]bool, len(g.f.names))
		distinct, least := 0, int32(-1)
		for _, n := range fit {
			id := g.f.ids[n.idx]
			if !seen[id] {
				seen[id] = true
				distinct++
				if c := counts[id]; least < 0 || c < least {
					least = c
				}
			}
		}
		waiting := distinct < g.groups
		if waiting {
			least = 0 // the groups not seen yet have none
		}
		out := fit[:0]
		for _, n := range fit {
			switch {
			case counts[g.f.ids[n.idx]] <= least:
				out = append(out, n)
			case refused == nil:
			case waiting:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: waiting for %d values, %d fit", g.name, g.groups, distinct))
			default:
				refused.add(n, fmt.Sprintf("GROUP_BY %s: other values have fewer instances", g.name))
			}
		}
		fit = out
	}
	return fit
}
