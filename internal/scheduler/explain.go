package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// nodeClass groups nodes with the same attributes and labels (all but
// hostname and kernel), so refusals read per kind of node.
type nodeClass struct {
	sig   string
	attrs map[string]string
}

// classOf returns n's class, computing it on first use.
func (s *scheduler) classOf(n *nodeState) *nodeClass {
	if n.class != nil {
		return n.class
	}
	attrs := map[string]string{}
	for k, v := range n.node.Labels {
		if !strings.HasPrefix(k, "berth.") {
			attrs[k] = v
		}
	}
	for _, f := range []string{model.FieldRegion, model.FieldZone, model.FieldArch, model.FieldOS} {
		if v, ok := n.node.Attribute(f); ok {
			attrs[f] = v
		}
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + attrs[k] + "\x00")
	}
	sig := b.String()
	if s.classes == nil {
		s.classes = map[string]*nodeClass{}
	}
	c, ok := s.classes[sig]
	if !ok {
		c = &nodeClass{sig: sig, attrs: attrs}
		s.classes[sig] = c
	}
	n.class = c
	return c
}

// refusals collects why nodes were refused, per node class.
type refusals struct {
	byClass map[*nodeClass]map[string]int
	s       *scheduler
}

func (r *refusals) add(n *nodeState, reason string) {
	if r.byClass == nil {
		r.byClass = map[*nodeClass]map[string]int{}
	}
	c := r.s.classOf(n)
	m := r.byClass[c]
	if m == nil {
		m = map[string]int{}
		r.byClass[c] = m
	}
	m[reason]++
}

// maxClasses bounds how many node classes a refusal lists.
const maxClasses = 5

// explain aggregates refusals like "0/3 nodes fit: 2 insufficient memory
// (need 512Mi, free 200Mi), 1 node cordoned". With nodes of several
// classes it groups them by the attributes that tell the classes apart:
// "0/5 nodes fit: zone=b (3 nodes): UNIQUE zone already used; zone=a
// (2 nodes): insufficient cpu (need 2, free 1)".
func (r *refusals) explain(total int) string {
	if total == 0 {
		return "0/0 nodes fit: no nodes registered"
	}
	// Classes refused for the same reasons merge: grouping by class
	// only helps where the reasons differ.
	type group struct {
		classes []*nodeClass
		labels  []string
		n       int
		m       map[string]int
	}
	keys := distinguishing(r.byClass)
	bySet := map[string]*group{}
	for c, m := range r.byClass {
		set := make([]string, 0, len(m))
		for reason := range m {
			set = append(set, reason)
		}
		sort.Strings(set)
		sig := strings.Join(set, "\x00")
		g := bySet[sig]
		if g == nil {
			g = &group{m: map[string]int{}}
			bySet[sig] = g
		}
		for reason, cnt := range m {
			g.m[reason] += cnt
			g.n += cnt
		}
		g.classes = append(g.classes, c)
	}
	if len(bySet) == 1 {
		for _, g := range bySet {
			return fmt.Sprintf("0/%d nodes fit: %s", total, reasonList(g.m, total, true))
		}
	}
	groups := make([]*group, 0, len(bySet))
	sets := make([][]*nodeClass, 0, len(bySet))
	for _, g := range bySet {
		groups = append(groups, g)
		sets = append(sets, g.classes)
	}
	// Name groups by the attributes that are one value per group (zone=b)
	// when there are such; else list the classes of each group.
	if telling := uniformKeys(sets, keys); len(telling) > 0 {
		for _, g := range groups {
			g.labels = []string{g.classes[0].label(telling)}
		}
	} else {
		for _, g := range groups {
			for _, c := range g.classes {
				g.labels = append(g.labels, c.label(keys))
			}
			sort.Strings(g.labels)
		}
	}
	sort.Slice(groups, func(i, j int) bool {
		if groups[i].n != groups[j].n {
			return groups[i].n > groups[j].n
		}
		return groups[i].labels[0] < groups[j].labels[0]
	})
	var out []string
	for i, g := range groups {
		if i == maxClasses {
			rest := 0
			for _, h := range groups[i:] {
				rest += h.n
			}
			out = append(out, fmt.Sprintf("%s more", plural(rest, "node")))
			break
		}
		label := g.labels
		if len(label) > 3 {
			label = append(label[:3:3], fmt.Sprintf("%d more", len(g.labels)-3))
		}
		out = append(out, fmt.Sprintf("%s (%s): %s", strings.Join(label, " | "), plural(g.n, "node"), reasonList(g.m, g.n, false)))
	}
	return fmt.Sprintf("0/%d nodes fit: %s", total, strings.Join(out, "; "))
}

// uniformKeys returns the keys that have one value within every group of
// classes and differ between groups.
func uniformKeys(groups [][]*nodeClass, keys []string) []string {
	var out []string
	for _, k := range keys {
		values := map[string]bool{}
		uniform := true
		for _, g := range groups {
			v0, ok0 := g[0].attrs[k]
			for _, c := range g[1:] {
				if v, ok := c.attrs[k]; v != v0 || ok != ok0 {
					uniform = false
				}
			}
			if !ok0 {
				v0 = "\x00" // missing differs from every value
			}
			values[v0] = true
		}
		if uniform && len(values) > 1 {
			out = append(out, k)
		}
	}
	return out
}

// label names a class by the distinguishing keys, e.g. "zone=b".
func (c *nodeClass) label(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, ok := c.attrs[k]
		if !ok {
			v = "<none>"
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, ",")
}

// reasonList writes "2 insufficient cpu (...), 1 node cordoned", most
// common first. A lone node has no count; so has a lone reason for every
// node unless countAll.
func reasonList(m map[string]int, nodes int, countAll bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) == 1 && !countAll && m[keys[0]] == nodes {
		return keys[0]
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		if nodes == 1 {
			parts[i] = k
		} else {
			parts[i] = fmt.Sprintf("%d %s", m[k], k)
		}
	}
	return strings.Join(parts, ", ")
}

// distinguishing returns the attribute keys whose values differ between
// classes, sorted with the builtin fields first.
func distinguishing(classes map[*nodeClass]map[string]int) []string {
	all := map[string]bool{}
	for c := range classes {
		for k := range c.attrs {
			all[k] = true
		}
	}
	var keys []string
	for k := range all {
		var first *string
		differs := false
		for c := range classes {
			v, ok := c.attrs[k]
			if !ok {
				v = "\x00"
			}
			if first == nil {
				first = &v
			} else if *first != v {
				differs = true
				break
			}
		}
		if differs {
			keys = append(keys, k)
		}
	}
	rank := map[string]int{model.FieldRegion: 0, model.FieldZone: 1, model.FieldArch: 2, model.FieldOS: 3}
	sort.Slice(keys, func(i, j int) bool {
		ri, iok := rank[keys[i]]
		rj, jok := rank[keys[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	return keys
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
