package model

import (
	"strings"
	"testing"
)

func TestParseSchedulingSpec(t *testing.T) {
	const doc = `
name: web
image: nginx
resources: {cpu: 1, memory: 256Mi, gpus: 2}
constraints:
  - {field: zone, op: GROUP_BY}
  - {field: hostname, op: UNIQUE}
  - {field: "label:disk", op: LIKE, value: "ssd|nvme"}
  - {field: zone, op: MAX_PER, value: "3"}
  - {label: tier, op: equals, value: gold}
spread: {field: zone}
affinity:
  - {app: db, field: zone}
  - {app: web, anti: true, required: true}
`
	s, err := ParseSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s.Normalize()
	if verr := s.Validate(); verr != nil {
		t.Fatal(verr)
	}
	if s.Resources.GPUs != 2 || s.Spread.Field != "zone" || len(s.Affinity) != 2 || s.Constraints[2].Target() != "label:disk" ||
		s.Constraints[4].Target() != "label:tier" {
		t.Fatalf("decoded %+v", s)
	}
}

func TestValidateScheduling(t *testing.T) {
	n := func(i int) *int { return &i }
	cases := []struct {
		name   string
		mutate func(*AppSpec)
		field  string
		msg    string
	}{
		{"bad regex", func(s *AppSpec) {
			s.Constraints = []Constraint{{Field: "zone", Op: OpUnique}, {Field: "disk", Op: OpLike, Value: "ssd("}}
		}, "constraints[1].value", "not a valid regular expression"},
		{"unknown op", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: "unique"}} }, "constraints[0].op", "UNIQUE"},
		{"field and label", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Label: "zone", Op: OpUnique}} }, "constraints[0].field", "not both"},
		{"no field", func(s *AppSpec) { s.Constraints = []Constraint{{Op: OpUnique}} }, "constraints[0].field", "is required"},
		{"bad field", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "label:", Op: OpUnique}} }, "constraints[0].field", "label key"},
		{"MAX_PER count", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: OpMaxPer, Value: "x"}} }, "constraints[0].value", "MAX_PER"},
		{"MAX_PER zero", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: OpMaxPer, Value: "0"}} }, "constraints[0].value", ">= 1"},
		{"GROUP_BY count", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: OpGroupBy, Value: "-1"}} }, "constraints[0].value", "groups"},
		{"UNIQUE value", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: OpUnique, Value: "a"}} }, "constraints[0].value", "not used"},
		{"IS value", func(s *AppSpec) { s.Constraints = []Constraint{{Field: "zone", Op: OpIs}} }, "constraints[0].value", "required"},
		{"spread field", func(s *AppSpec) { s.Spread = &Spread{} }, "spread.field", "required"},
		{"affinity app", func(s *AppSpec) { s.Affinity = []Affinity{{App: "DB"}} }, "affinity[0].app", "lowercase"},
		{"affinity field", func(s *AppSpec) { s.Affinity = []Affinity{{App: "db", Field: "a b"}} }, "affinity[0].field", "label key"},
		{"gpus", func(s *AppSpec) { s.Resources.GPUs = -1 }, "resources.gpus", "between 0 and 64"},
		{"type", func(s *AppSpec) { s.Type = "cron" }, "type", "service, system or batch"},
		{"system instances", func(s *AppSpec) { s.Type = TypeSystem; s.Instances = n(3) }, "instances", "every ready node"},
		{"batch instances", func(s *AppSpec) { s.Type = TypeBatch; s.Instances = n(3) }, "instances", "completions"},
		{"batch restart always", func(s *AppSpec) { s.Type = TypeBatch; s.Restart = &RestartPolicy{Policy: RestartAlways} }, "restart.policy", "never or on-failure"},
		{"batch completions", func(s *AppSpec) { s.Type = TypeBatch; s.Completions = n(0) }, "completions", "between 1"},
		{"batch backoff", func(s *AppSpec) { s.Type = TypeBatch; s.BackoffLimit = n(-1) }, "backoffLimit", "between 0"},
		{"completions on a service", func(s *AppSpec) { s.Parallelism = n(2) }, "parallelism", "only used with type batch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			s.Instances = nil
			s.Restart = nil
			tc.mutate(&s)
			verr := s.Validate()
			if verr == nil {
				t.Fatal("accepted")
			}
			for _, f := range verr.Errors {
				if f.Field == tc.field && strings.Contains(f.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("errors %+v do not name %q with %q", verr.Errors, tc.field, tc.msg)
		})
	}
}

func TestNormalizeJob(t *testing.T) {
	s := valid()
	s.Instances = nil
	s.Restart = nil
	s.Type = TypeBatch
	s.Normalize()
	if s.BatchCompletions() != 1 || *s.Parallelism != 1 || *s.BackoffLimit != DefaultBackoffLimit || s.Restart.Policy != RestartNever {
		t.Fatalf("batch defaults: %+v %+v", s, s.Restart)
	}
	if verr := s.Validate(); verr != nil {
		t.Fatal(verr)
	}
	svc := valid()
	svc.Type = TypeService
	svc.Normalize()
	plain := valid()
	plain.Normalize()
	if TemplateHash(svc) != TemplateHash(plain) {
		t.Fatal("type service and no type hash differently")
	}
}

func TestNodeAttribute(t *testing.T) {
	n := Node{Name: "n1", Zone: "a", Labels: map[string]string{"berth.region": "eu", "arch": "arm64", "disk": "ssd", "zone": "z"}}
	for field, want := range map[string]string{"hostname": "n1", "zone": "a", "region": "eu", "arch": "arm64", "disk": "ssd", "label:zone": "z"} {
		if v, ok := n.Attribute(field); !ok || v != want {
			t.Errorf("%s = %q, %v; want %q", field, v, ok, want)
		}
	}
	if _, ok := n.Attribute("os"); ok {
		t.Error("os should be missing")
	}
}

func TestConstraintValueScalar(t *testing.T) {
	s, err := ParseSpec([]byte("name: web\nimage: nginx\nconstraints: [{field: zone, op: MAX_PER, value: 3}, {field: gpu, op: IS, value: true}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Constraints[0].Value != "3" || s.Constraints[1].Value != "true" {
		t.Fatalf("values %q %q", s.Constraints[0].Value, s.Constraints[1].Value)
	}
	_, err = ParseSpec([]byte("name: web\nimage: nginx\nconstraints: [{field: zone, op: IS, value: [a]}]\n"))
	verr, ok := err.(*ValidationError)
	if !ok || verr.Errors[0].Field != "constraints[0].value" {
		t.Fatalf("got %v", err)
	}
}

func TestTypeStatus(t *testing.T) {
	n := func(i int) *int { return &i }
	batch := &App{Revision: 1, Spec: AppSpec{Type: TypeBatch, Completions: n(3), Parallelism: n(2), BackoffLimit: n(1)}}
	done := func(id, outcome string, restarts int) Instance {
		return Instance{ID: id, Revision: 1, Desired: DesiredStop, Outcome: outcome,
			Status: InstanceStatus{State: StateStopped, Restarts: restarts}}
	}
	running := Instance{ID: "r", Revision: 1, Desired: DesiredRun, Node: "n1", Status: InstanceStatus{State: StateRunning}}
	st := AppStatus{Failing: true}
	TypeStatus(batch, []Instance{done("a", OutcomeSucceeded, 0), running}, &st)
	if st.Job == nil || st.Job.Succeeded != 1 || st.Job.Active != 1 || st.Desired != 2 || st.Converged || st.Failing {
		t.Fatalf("running job: %+v %+v", st, st.Job)
	}
	st = AppStatus{}
	TypeStatus(batch, []Instance{done("a", OutcomeSucceeded, 0), done("b", OutcomeSucceeded, 0), done("c", OutcomeSucceeded, 1)}, &st)
	if !st.Converged || st.Failing || st.Desired != 0 || st.Job.Failed != 1 {
		t.Fatalf("complete job: %+v %+v", st, st.Job)
	}
	st = AppStatus{}
	TypeStatus(batch, []Instance{done("a", OutcomeFailed, 0), done("b", OutcomeFailed, 0)}, &st)
	if st.Converged || !st.Failing || st.Message != "job failed: 2 failures exceed backoffLimit 1 (0/3 succeeded)" {
		t.Fatalf("failed job: %+v", st)
	}
	system := &App{Revision: 2, Spec: AppSpec{Type: TypeSystem, Instances: n(1)}}
	st = AppStatus{Desired: 1, Ready: 2, Running: 2}
	TypeStatus(system, []Instance{running, running}, &st)
	if st.Desired != 0 || st.Converged {
		t.Fatalf("system with old instances only: %+v", st)
	}
	running.Revision = 2
	st = AppStatus{Desired: 1, Ready: 2, Running: 2}
	TypeStatus(system, []Instance{running, running}, &st)
	if st.Desired != 2 || !st.Converged {
		t.Fatalf("system: %+v", st)
	}
}
