package deployment

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

func systemApp(rev int64, mut ...func(*model.AppSpec)) *model.App {
	a := &model.App{Namespace: "default", Name: "agent", Revision: rev}
	a.Spec = model.AppSpec{Type: model.TypeSystem, Driver: "docker"}
	for _, m := range mut {
		m(&a.Spec)
	}
	return a
}

func sysNode(name string, mut ...func(*model.Node)) model.Node {
	n := model.Node{Name: name, Status: model.NodeReady, Drivers: []string{"docker"}}
	for _, m := range mut {
		m(&n)
	}
	return n
}

func nodeSet(ns ...model.Node) map[string]*model.Node {
	out := map[string]*model.Node{}
	for _, n := range ns {
		out[n.Name] = &n
	}
	return out
}

// on builds an instance pinned to and placed on node.
func on(id string, rev int64, state, node string) model.Instance {
	in := inst(id, rev, state, 0)
	in.TargetNode, in.Node = node, node
	if state == "unplaced" {
		in.Node = ""
	}
	return in
}

func TestDecideSystem(t *testing.T) {
	gpu := func(n *model.Node) { n.Labels = map[string]string{"gpu": "yes"} }
	cordoned := func(n *model.Node) { n.Cordoned = true }
	down := func(n *model.Node) { n.Status = model.NodeDown }
	onlyGPU := func(s *model.AppSpec) {
		s.Constraints = []model.Constraint{{Field: "gpu", Op: model.OpIs, Value: "yes"}}
	}
	cases := []struct {
		name  string
		app   *model.App
		insts []model.Instance
		nodes map[string]*model.Node
		want  Decision
	}{
		{name: "one per ready node", app: systemApp(1),
			nodes: nodeSet(sysNode("n1"), sysNode("n2"), sysNode("n3")),
			want:  Decision{CreateOn: []string{"n1", "n2", "n3"}}},
		{name: "instances is ignored", app: func() *model.App { a := systemApp(1); n := 5; a.Spec.Instances = &n; return a }(),
			nodes: nodeSet(sysNode("n1")),
			want:  Decision{CreateOn: []string{"n1"}}},
		{name: "only matching nodes", app: systemApp(1, onlyGPU),
			nodes: nodeSet(sysNode("n1"), sysNode("n2", gpu)),
			want:  Decision{CreateOn: []string{"n2"}}},
		{name: "a joining node gets one", app: systemApp(1),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a", 1, "running", "n1")},
			want:  Decision{CreateOn: []string{"n2"}}},
		{name: "converged", app: systemApp(1),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a", 1, "running", "n1"), on("b", 1, "unplaced", "n2")},
			want:  Decision{}},
		{name: "a cordoned node keeps its instance but gets no new one", app: systemApp(1),
			nodes: nodeSet(sysNode("n1", cordoned), sysNode("n2", cordoned)),
			insts: []model.Instance{on("a", 1, "running", "n1")},
			want:  Decision{}},
		{name: "a down node's instance is lost and not replaced elsewhere", app: systemApp(1),
			nodes: nodeSet(sysNode("n1", down), sysNode("n2")),
			insts: []model.Instance{on("a", 1, "running", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Lost: []string{"a"}}},
		{name: "a node that left: its pending instance stops", app: systemApp(1),
			nodes: nodeSet(sysNode("n2")),
			insts: []model.Instance{on("a", 1, "unplaced", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Stop: []Stop{{"a", "node n1 left the cluster"}}}},
		{name: "a node that no longer matches loses its instance", app: systemApp(1, onlyGPU),
			nodes: nodeSet(sysNode("n1"), sysNode("n2", gpu)),
			insts: []model.Instance{on("a", 1, "running", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Stop: []Stop{{"a", "node n1 no longer matches: constraint gpu IS yes not met"}}}},
		{name: "duplicates on a node are stopped", app: systemApp(1),
			nodes: nodeSet(sysNode("n1")),
			insts: []model.Instance{on("a", 1, "running", "n1"), on("b", 1, "unplaced", "n1")},
			want:  Decision{Stop: []Stop{{"b", "one instance per node"}}}},
		{name: "rollout replaces one node at a time", app: systemApp(2),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a", 1, "running", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Stop: []Stop{{"a", "replaced by revision 2"}}}},
		{name: "rollout creates the new instance once the old one stopped", app: systemApp(2),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a", 1, "stopping", "n1"), on("b", 1, "running", "n2")},
			want: Decision{CreateOn: []string{"n1"},
				Waiting: "waiting for revision 2 to become ready before replacing the instance on n2"}},
		{name: "rollout waits for the new instance to be ready", app: systemApp(2),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a2", 2, "unplaced", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Waiting: "waiting for revision 2 to become ready before replacing the instance on n2"}},
		{name: "rollout goes on once the new instance is ready", app: systemApp(2),
			nodes: nodeSet(sysNode("n1"), sysNode("n2")),
			insts: []model.Instance{on("a2", 2, "running", "n1"), on("b", 1, "running", "n2")},
			want:  Decision{Stop: []Stop{{"b", "replaced by revision 2"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.app, tc.insts, tc.nodes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func batchApp(rev int64, completions, parallelism, backoff int) *model.App {
	a := &model.App{Namespace: "default", Name: "job", Revision: rev}
	a.Spec = model.AppSpec{Type: model.TypeBatch, Completions: &completions, Parallelism: &parallelism, BackoffLimit: &backoff}
	return a
}

// exited builds a placed instance that ended with code (state stopped
// for 0, failed otherwise), as the agent writes it.
func exited(id string, rev int64, code int) model.Instance {
	in := inst(id, rev, "running", 0)
	in.Status.State, in.Status.ExitCode = model.StateStopped, code
	if code != 0 {
		in.Status.State = model.StateFailed
		in.Status.Message = fmt.Sprintf("exited with code %d", code)
	}
	return in
}

func record(id string, rev int64, outcome string) model.Instance {
	in := exited(id, rev, 0)
	in.Desired, in.Outcome = model.DesiredStop, outcome
	return in
}

func TestDecideBatch(t *testing.T) {
	restarted := func(in model.Instance, n int) model.Instance { in.Status.Restarts = n; return in }
	cases := []struct {
		name  string
		app   *model.App
		insts []model.Instance
		want  Decision
	}{
		{name: "starts parallelism instances", app: batchApp(1, 5, 2, 3),
			want: Decision{Create: 2}},
		{name: "never more than the completions left", app: batchApp(1, 3, 5, 3),
			insts: []model.Instance{record("a", 1, model.OutcomeSucceeded)},
			want:  Decision{Create: 2}},
		{name: "a success is recorded and replaced", app: batchApp(1, 3, 2, 3),
			insts: []model.Instance{exited("a", 1, 0), inst("b", 1, "running", 0)},
			want:  Decision{Finish: []Finish{{"a", model.OutcomeSucceeded, "exited 0"}}, Create: 1}},
		{name: "a failure is recorded and retried", app: batchApp(1, 1, 1, 3),
			insts: []model.Instance{exited("a", 1, 2)},
			want:  Decision{Finish: []Finish{{"a", model.OutcomeFailed, "exited with code 2"}}, Create: 1}},
		{name: "a failure waiting for an in-place restart is not final", app: batchApp(1, 1, 1, 3),
			insts: []model.Instance{func() model.Instance {
				in := exited("a", 1, 2)
				in.Status.NextRestartAt = &t0
				return in
			}()},
			want: Decision{}},
		{name: "the last success completes the job once", app: batchApp(1, 2, 2, 3),
			insts: []model.Instance{record("a", 1, model.OutcomeSucceeded), exited("b", 1, 0)},
			want: Decision{Finish: []Finish{{"b", model.OutcomeSucceeded, "exited 0"}},
				Job: &JobEvent{Reason: "JobComplete", Message: "job complete: 2/2 succeeded, 0 failed"}}},
		{name: "a complete job does nothing and keeps its records", app: batchApp(1, 2, 2, 3),
			insts: []model.Instance{record("a", 1, model.OutcomeSucceeded), record("b", 1, model.OutcomeSucceeded)},
			want:  Decision{}},
		{name: "exceeding the backoff limit fails the job and stops the rest", app: batchApp(1, 5, 2, 1),
			insts: []model.Instance{record("a", 1, model.OutcomeFailed), exited("b", 1, 1), inst("c", 1, "running", 0)},
			want: Decision{Finish: []Finish{{"b", model.OutcomeFailed, "exited with code 1"},
				{"c", model.OutcomeStopped, "job failed: 2 failures exceed backoffLimit 1 (0/5 succeeded)"}},
				Job: &JobEvent{Reason: "JobFailed", Message: "job failed: 2 failures exceed backoffLimit 1 (0/5 succeeded)"}}},
		{name: "in-place restarts after failures count", app: batchApp(1, 1, 1, 2),
			insts: []model.Instance{restarted(inst("a", 1, "running", 0), 3)},
			want: Decision{Finish: []Finish{{"a", model.OutcomeStopped, "job failed: 3 failures exceed backoffLimit 2 (0/1 succeeded)"}},
				Job: &JobEvent{Reason: "JobFailed", Message: "job failed: 3 failures exceed backoffLimit 2 (0/1 succeeded)"}}},
		{name: "a failed job stays failed", app: batchApp(1, 1, 1, 2),
			insts: []model.Instance{restarted(record("a", 1, model.OutcomeStopped), 3)},
			want:  Decision{}},
		{name: "a new revision runs the job again", app: batchApp(2, 1, 1, 2),
			insts: []model.Instance{record("a", 1, model.OutcomeSucceeded), inst("b", 1, "running", 0)},
			want:  Decision{Delete: []string{"a"}, Stop: []Stop{{"b", "replaced by revision 2"}}, Create: 1}},
		{name: "a lost instance is replaced, not counted", app: batchApp(1, 1, 1, 0),
			insts: []model.Instance{func() model.Instance { in := inst("a", 1, "running", 0); in.Node = "gone"; return in }()},
			want:  Decision{Lost: []string{"a"}, Create: 1}},
		{name: "deleting removes the records", app: func() *model.App { a := batchApp(1, 1, 1, 0); a.Deleting = true; return a }(),
			insts: []model.Instance{record("a", 1, model.OutcomeSucceeded)},
			want:  Decision{Delete: []string{"a"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.app, tc.insts, readyNodes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestBatchRunsToCompletion simulates a job whose every second attempt
// fails, and checks it ends complete with the right counts.
func TestBatchRunsToCompletion(t *testing.T) {
	a := batchApp(1, 4, 2, 10)
	var insts []model.Instance
	attempt := 0
	for step := 0; step < 100; step++ {
		d := Decide(a, insts, readyNodes)
		for _, f := range d.Finish {
			for i := range insts {
				if insts[i].ID == f.ID {
					insts[i].Desired, insts[i].Outcome = model.DesiredStop, f.Outcome
				}
			}
		}
		for i := 0; i < d.Create; i++ {
			attempt++
			insts = append(insts, exited(fmt.Sprintf("i%d", attempt), 1, attempt%2))
		}
		if d.Create == 0 && len(d.Finish) == 0 {
			break
		}
	}
	js := model.BatchProgress(a, insts)
	if !js.Complete || js.Succeeded != 4 || js.Failed != 4 || js.Active != 0 || js.JobFailed {
		t.Fatalf("progress %+v after %d attempts", js, attempt)
	}
}

// TestBatchCountsFailedStarts: an instance whose start keeps failing (the
// agent retries it with a backoff, counting Status.Failures) fails the job
// once the failures exceed the limit.
func TestBatchCountsFailedStarts(t *testing.T) {
	in := inst("a", 1, model.StateFailed, 0)
	in.Status.Failures, in.Status.NextRestartAt = 3, &t0
	d := Decide(batchApp(1, 1, 1, 2), []model.Instance{in}, readyNodes)
	if d.Job == nil || d.Job.Reason != "JobFailed" || len(d.Finish) != 1 || d.Finish[0].Outcome != model.OutcomeStopped {
		t.Fatalf("decision %+v", d)
	}
}

// TestSystemRolloutConverges simulates a system app's rollout over 4
// nodes where new instances become ready at once: at most one node is
// without an instance at any step, and every node ends on revision 2.
func TestSystemRolloutConverges(t *testing.T) {
	nodes := nodeSet(sysNode("n1"), sysNode("n2"), sysNode("n3"), sysNode("n4"))
	var insts []model.Instance
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		insts = append(insts, on("old-"+n, 1, "running", n))
	}
	a := systemApp(2)
	for step := 0; step < 50; step++ {
		d := Decide(a, insts, nodes)
		if d.Create != 0 {
			t.Fatalf("system app asked for %d unpinned instances", d.Create)
		}
		for _, s := range d.Stop { // stopped instances go away at once
			for i := range insts {
				if insts[i].ID == s.ID {
					insts = append(insts[:i], insts[i+1:]...)
					break
				}
			}
		}
		for _, n := range d.CreateOn {
			insts = append(insts, on(fmt.Sprintf("new-%s", n), 2, "running", n))
		}
		if len(insts) < 3 {
			t.Fatalf("step %d: only %d instances", step, len(insts))
		}
		if len(d.Stop) == 0 && len(d.CreateOn) == 0 {
			break
		}
	}
	if len(insts) != 4 {
		t.Fatalf("%d instances, want 4", len(insts))
	}
	for _, in := range insts {
		if in.Revision != 2 {
			t.Fatalf("%s still at revision %d", in.ID, in.Revision)
		}
	}
}
