package deployment

import (
	"sort"

	"github.com/berth-dev/berth/internal/model"
)

// Stop asks for one instance to be stopped, with the reason shown in events.
type Stop struct {
	ID     string
	Reason string
}

// Decision is what the controller should do for one app in this pass.
type Decision struct {
	// Create is how many new instances of the current revision to create.
	Create int
	// Stop lists active instances to stop.
	Stop []Stop
	// Lost lists active instances whose node is down; they are marked lost
	// (and stopped) so replacements are created.
	Lost []string
	// Delete lists finished instances whose objects can be removed.
	Delete []string
	// DeleteApp is true when a deleting app has no instances left.
	DeleteApp bool
	// Waiting explains why a rollout is not progressing, if it is not.
	Waiting string
	// CreateOn lists nodes that each get one new instance pinned to them
	// (system apps).
	CreateOn []string
	// Finish records the outcome of batch instances that ended: the
	// controller sets Instance.Outcome and stops them, so the record
	// stays and the agent never runs them again.
	Finish []Finish
	// Job, when set, is a batch app's completion or failure, reached in
	// this pass; the controller records it as an event once.
	Job *JobEvent
	// CreateStable is how many instances of StableRevision to create: a
	// blue/green (before its switch) or canary rollout keeps the stable
	// set whole when one of its instances is lost.
	CreateStable   int
	StableRevision int64
	// Rollout is the service's rollout state to store; nil leaves the
	// stored one as it is.
	Rollout *model.Rollout
	// Revert returns the app to an earlier revision (abort, undo,
	// automatic rollback), stored with Rollout in one transaction.
	Revert *Revert
	// Events are rollout steps to record once the pass's writes succeed.
	Events []RolloutEvent
	// RequestDone: the pending rollout request was handled; delete it.
	RequestDone bool
}

// Finish is the recorded end of one batch instance.
type Finish struct {
	ID      string
	Outcome string // model.OutcomeSucceeded or model.OutcomeFailed
	Reason  string
}

// JobEvent is a batch app reaching its end.
type JobEvent struct {
	// Reason is JobComplete or JobFailed.
	Reason  string
	Message string
}

// Decide is Plan without a stored rollout, request or clock: the
// instance changes only (rollout fields cleared). Tests of the app types
// use it.
func Decide(app *model.App, insts []model.Instance, nodes map[string]*model.Node) Decision {
	d := Plan(Input{App: app, Instances: Refs(insts), Nodes: nodes})
	d.Rollout, d.Events, d.Revert, d.RequestDone = nil, nil, nil, false
	return d
}

// Refs points at each of insts, for Input.Instances.
func Refs(insts []model.Instance) []*model.Instance {
	out := make([]*model.Instance, len(insts))
	for i := range insts {
		out[i] = &insts[i]
	}
	return out
}

// Plan is the pure core of the deployment controller: from an app, its
// instances, the node set, the stored rollout and a pending request it
// decides one step towards the spec. Services move between revisions by
// their rollout strategy (rollout.go, strategies.go): rolling (maxSurge,
// maxUnavailable, health-gated), blueGreen or canary, failing and rolling
// back on a crash loop or a passed progress deadline. System apps run one
// instance per eligible node (system.go); batch apps run to completion
// (batch.go).
func Plan(in Input) Decision {
	app := in.App
	d, cur, old, records := partition(app, in.Instances, in.Nodes)
	switch {
	case app.Deleting:
		for _, i := range append(cur, old...) {
			d.Stop = append(d.Stop, Stop{ID: i.ID, Reason: "app deleted"})
		}
		d.DeleteApp = len(in.Instances) == 0
		return d
	case app.Spec.IsSystem():
		return decideSystem(d, app, cur, old, in.Nodes)
	case app.Spec.IsBatch():
		return decideBatch(d, app, cur, old, records)
	}
	return planService(d, in, cur, old)
}

// partition sorts instances into active ones of the current revision
// (cur), active older ones (old) and batch outcome records; it decides
// the deletes and the lost.
func partition(app *model.App, insts []*model.Instance, nodes map[string]*model.Node) (d Decision, cur, old, records []*model.Instance) {
	for _, in := range insts {
		gone := in.Node != "" && nodeGone(nodes, in.Node)
		if !in.Active() {
			if in.Outcome != "" && !app.Deleting && in.Revision == app.Revision && app.Spec.IsBatch() {
				records = append(records, in)
				continue
			}
			if in.Terminal() || in.Node == "" || gone {
				d.Delete = append(d.Delete, in.ID)
			}
			continue
		}
		if gone {
			d.Lost = append(d.Lost, in.ID)
			continue
		}
		if in.Revision == app.Revision {
			cur = append(cur, in)
		} else {
			old = append(old, in)
		}
	}
	return d, cur, old, records
}

func nodeGone(nodes map[string]*model.Node, name string) bool {
	n, ok := nodes[name]
	return !ok || n.Status == model.NodeDown
}

// pickToStop chooses k instances to stop: unplaced first, then not
// running, then not ready, then the newest.
func pickToStop(insts []*model.Instance, k int, hasHealth bool) []*model.Instance {
	if k <= 0 {
		return nil
	}
	rank := func(in *model.Instance) int {
		switch {
		case in.Node == "":
			return 0
		case in.Status.State != model.StateRunning:
			return 1
		case !in.Ready(hasHealth):
			return 2
		}
		return 3
	}
	s := append([]*model.Instance(nil), insts...)
	sort.SliceStable(s, func(i, j int) bool {
		ri, rj := rank(s[i]), rank(s[j])
		if ri != rj {
			return ri < rj
		}
		if !s[i].CreatedAt.Equal(s[j].CreatedAt) {
			return s[i].CreatedAt.After(s[j].CreatedAt)
		}
		return s[i].ID > s[j].ID
	})
	if k > len(s) {
		k = len(s)
	}
	return s[:k]
}
