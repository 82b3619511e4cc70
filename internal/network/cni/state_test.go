//go:build linux

package cni

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/driver"
)

func TestNormalizePorts(t *testing.T) {
	tests := []struct {
		name    string
		in      []driver.PortBinding
		want    []driver.PortBinding
		wantErr string
	}{
		{name: "none", in: nil, want: []driver.PortBinding{}},
		{name: "default tcp, lower case",
			in:   []driver.PortBinding{{Name: "a", ContainerPort: 80, HostPort: 8080}, {Name: "b", ContainerPort: 53, HostPort: 53, Protocol: "UDP"}},
			want: []driver.PortBinding{{Name: "a", ContainerPort: 80, HostPort: 8080, Protocol: "tcp"}, {Name: "b", ContainerPort: 53, HostPort: 53, Protocol: "udp"}}},
		{name: "same port, both protocols",
			in:   []driver.PortBinding{{ContainerPort: 53, HostPort: 53, Protocol: "tcp"}, {ContainerPort: 53, HostPort: 53, Protocol: "udp"}},
			want: []driver.PortBinding{{ContainerPort: 53, HostPort: 53, Protocol: "tcp"}, {ContainerPort: 53, HostPort: 53, Protocol: "udp"}}},
		{name: "several zero host ports",
			in:   []driver.PortBinding{{ContainerPort: 80}, {ContainerPort: 81}},
			want: []driver.PortBinding{{ContainerPort: 80, Protocol: "tcp"}, {ContainerPort: 81, Protocol: "tcp"}}},
		{name: "duplicate", in: []driver.PortBinding{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 81, HostPort: 8080, Protocol: "tcp"}}, wantErr: "host port 8080/tcp is published twice"},
		{name: "sctp", in: []driver.PortBinding{{ContainerPort: 80, HostPort: 80, Protocol: "sctp"}}, wantErr: `protocol "sctp" is not supported`},
		{name: "container port", in: []driver.PortBinding{{ContainerPort: 0, HostPort: 80}}, wantErr: "container port must be between 1 and 65535"},
		{name: "host port", in: []driver.PortBinding{{ContainerPort: 80, HostPort: 70000}}, wantErr: "host port must be between 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizePorts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestClaimNames(t *testing.T) {
	tests := []struct {
		name string
		hp   hostPort
		ok   bool
	}{
		{"tcp-8080", hostPort{8080, "tcp"}, true},
		{"udp-53", hostPort{53, "udp"}, true},
		{"tcp-0", hostPort{}, false},
		{"tcp-080", hostPort{}, false},
		{"sctp-80", hostPort{}, false},
		{"tcp-70000", hostPort{}, false},
		{".claim-123", hostPort{}, false},
	}
	for _, tt := range tests {
		hp, ok := parseClaimName(tt.name)
		if ok != tt.ok || hp != tt.hp {
			t.Errorf("parseClaimName(%q) = %v, %v; want %v, %v", tt.name, hp, ok, tt.hp, tt.ok)
		}
		if ok && hp.claimName() != tt.name {
			t.Errorf("claimName round trip: %q → %q", tt.name, hp.claimName())
		}
	}
	if s := allocatedError(hostPort{8080, "tcp"}, "web-1").Error(); s != "host port 8080/tcp is already allocated (published for workload web-1)" {
		t.Errorf("allocatedError = %s", s)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{
		"web-1": true, "a.b_c-D9": true, "": false, ".hidden": false, "-x": false,
		"a/b": false, "a b": false, "../x": false, strings.Repeat("x", 201): false,
	} {
		if err := validID(id); (err == nil) != ok {
			t.Errorf("validID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestStoreRecords(t *testing.T) {
	dir := testDir(t)
	s, err := newStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.load("w1"); ok || err != nil {
		t.Fatalf("load of a missing record: %v, %v", ok, err)
	}
	r := record{Phase: phaseReady, CNIAdded: true}
	r.ID, r.NetNS, r.Ports = "w1", "/run/netns/berth-w1", []driver.PortBinding{{ContainerPort: 80, HostPort: 8080, Protocol: "tcp"}}
	if err := s.save(r); err != nil {
		t.Fatal(err)
	}
	// A second store over the same directory (a restart) reads it back.
	s2, _ := newStore(dir)
	got, ok, err := s2.load("w1")
	if err != nil || !ok || !reflect.DeepEqual(got, r) {
		t.Fatalf("load = %+v, %v, %v; want %+v", got, ok, err, r)
	}
	if ids, _ := s2.ids(); !reflect.DeepEqual(ids, []string{"w1"}) {
		t.Fatalf("ids = %v", ids)
	}
	// No temp files are left by atomic writes.
	ents, _ := os.ReadDir(filepath.Join(dir, "attachments"))
	if len(ents) != 1 {
		t.Fatalf("attachments dir holds %d entries", len(ents))
	}
	os.WriteFile(s.recordPath("bad"), []byte("{"), 0o600)
	if _, _, err := s.load("bad"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt record: err = %v", err)
	}
	if err := s.remove("w1"); err != nil {
		t.Fatal(err)
	}
	if err := s.remove("w1"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestStoreClaims(t *testing.T) {
	dir := testDir(t)
	s, _ := newStore(dir)
	p := hostPort{8080, "tcp"}
	steps := []struct {
		op, id    string
		wantOwner string
		wantOK    bool
	}{
		{"claim", "a", "a", true},
		{"claim", "a", "a", true}, // again: idempotent
		{"claim", "b", "a", false},
		{"release", "b", "a", true}, // not b's: left alone
		{"release", "a", "", true},
		{"claim", "b", "b", true},
	}
	for i, st := range steps {
		switch st.op {
		case "claim":
			owner, ok, err := s.claim(p, st.id)
			if err != nil || owner != st.wantOwner || ok != st.wantOK {
				t.Fatalf("step %d: claim(%s) = %q, %v, %v; want %q, %v", i, st.id, owner, ok, err, st.wantOwner, st.wantOK)
			}
		case "release":
			if err := s.release(p, st.id); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if owner, _ := s.owner(p); owner != st.wantOwner {
				t.Fatalf("step %d: owner after release(%s) = %q, want %q", i, st.id, owner, st.wantOwner)
			}
		}
	}
	// An empty (damaged) claim is taken over.
	os.WriteFile(filepath.Join(dir, "ports", "udp-53"), nil, 0o600)
	if owner, ok, err := s.claim(hostPort{53, "udp"}, "c"); !ok || owner != "c" || err != nil {
		t.Fatalf("claim over an empty claim: %q, %v, %v", owner, ok, err)
	}
	// pruneClaims drops claims whose owner has no record.
	r := record{Phase: phaseReady}
	r.ID = "b"
	s.save(r)
	if err := s.pruneClaims(); err != nil {
		t.Fatal(err)
	}
	cl, _ := s.claims()
	if !reflect.DeepEqual(cl, map[hostPort]string{p: "b"}) {
		t.Fatalf("claims after prune = %v", cl)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "ports"))
	if len(ents) != 1 {
		t.Fatalf("ports dir holds %d entries, want 1 (no temp files)", len(ents))
	}
}

// Concurrent claimants of one port: exactly one wins.
func TestStoreClaimRace(t *testing.T) {
	s, _ := newStore(testDir(t))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%d", i)
			if _, ok, err := s.claim(hostPort{9000, "tcp"}, id); err == nil && ok {
				mu.Lock()
				winners = append(winners, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(winners)
	if len(winners) != 1 {
		t.Fatalf("winners = %v, want exactly one", winners)
	}
}
