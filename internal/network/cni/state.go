//go:build linux

package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/network"
)

// Phases of an attachment record. A record is written before anything
// else is made for a workload and removed after everything is gone, so a
// record in any phase tells Detach (after a crash) what may exist.
const (
	// phaseAttaching: ports are being claimed, the netns made or CNI ADD run.
	phaseAttaching = "attaching"
	// phaseReady: the attachment is complete.
	phaseReady = "ready"
)

// record is the on-disk state of one attachment.
type record struct {
	network.Attachment
	// Phase is phaseAttaching or phaseReady.
	Phase string `json:"phase"`
	// CNIAdded is set before CNI ADD is run; only then does Detach need a
	// CNI DEL.
	CNIAdded bool `json:"cniAdded,omitempty"`
}

// store keeps attachment records and host-port claims as files:
//
//	<dir>/attachments/<id>.json   one record per workload
//	<dir>/ports/<proto>-<port>    one claim per published host port,
//	                              holding the owner's workload id
//
// Records are replaced atomically (temp file, fsync, rename, fsync dir);
// claims are created with O_EXCL, so two claimants can never both win.
type store struct {
	attachDir string
	portsDir  string
}

// newStore creates the store's directories under dir.
func newStore(dir string) (*store, error) {
	s := &store{attachDir: filepath.Join(dir, "attachments"), portsDir: filepath.Join(dir, "ports")}
	for _, d := range []string{s.attachDir, s.portsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cni: state directory: %w", err)
		}
	}
	return s, nil
}

// validID reports whether id can name files, a netns and a CNI container.
func validID(id string) error {
	if id == "" || len(id) > 200 || id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("cni: invalid workload id %q", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("cni: invalid workload id %q: use letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

func (s *store) recordPath(id string) string { return filepath.Join(s.attachDir, id+".json") }

// load returns id's record, or ok=false if there is none.
func (s *store) load(id string) (record, bool, error) {
	b, err := os.ReadFile(s.recordPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("cni: read attachment %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, false, fmt.Errorf("cni: attachment record %s is corrupt: %w", s.recordPath(id), err)
	}
	return r, true, nil
}

// save writes r crash-safely.
func (s *store) save(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.recordPath(r.ID), b); err != nil {
		return fmt.Errorf("cni: save attachment %s: %w", r.ID, err)
	}
	return nil
}

// remove deletes id's record.
func (s *store) remove(id string) error {
	if err := os.Remove(s.recordPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cni: remove attachment %s: %w", id, err)
	}
	return syncDir(s.attachDir)
}

// ids lists the workloads that have a record.
func (s *store) ids() ([]string, error) {
	ents, err := os.ReadDir(s.attachDir)
	if err != nil {
		return nil, fmt.Errorf("cni: list attachments: %w", err)
	}
	var out []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && validID(id) == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// claim records that id owns hp. If someone else owns it, claim returns
// the owner and ok=false. Claiming a port id already owns succeeds.
//
// The claim is written to a temp file and hard-linked into place: link
// fails if the name exists, so exactly one claimant wins, and a claim is
// never visible half-written.
func (s *store) claim(hp hostPort, id string) (owner string, ok bool, err error) {
	p := filepath.Join(s.portsDir, hp.claimName())
	f, err := os.CreateTemp(s.portsDir, ".claim-*")
	if err != nil {
		return "", false, fmt.Errorf("cni: claim host port %s: %w", hp, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(id)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("cni: claim host port %s: %w", hp, err)
	}
	for range 3 {
		err := os.Link(tmp, p)
		if err == nil {
			return id, true, syncDir(s.portsDir)
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", false, fmt.Errorf("cni: claim host port %s: %w", hp, err)
		}
		owner, err := s.owner(hp)
		if err != nil {
			return "", false, err
		}
		if owner == id {
			return id, true, nil
		}
		if owner != "" {
			return owner, false, nil
		}
		// Released meanwhile (or an empty, damaged claim): retry.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", false, fmt.Errorf("cni: claim host port %s: %w", hp, err)
		}
	}
	return "", false, fmt.Errorf("cni: claim host port %s: claim file keeps changing", hp)
}

// owner returns the workload id that claims hp, or "" if none.
func (s *store) owner(hp hostPort) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.portsDir, hp.claimName()))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cni: read claim of host port %s: %w", hp, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// release drops id's claim on hp; a claim held by another id is left alone.
func (s *store) release(hp hostPort, id string) error {
	owner, err := s.owner(hp)
	if err != nil || owner != id {
		return err
	}
	if err := os.Remove(filepath.Join(s.portsDir, hp.claimName())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cni: release host port %s: %w", hp, err)
	}
	return syncDir(s.portsDir)
}

// claims returns every claim as port → owner.
func (s *store) claims() (map[hostPort]string, error) {
	ents, err := os.ReadDir(s.portsDir)
	if err != nil {
		return nil, fmt.Errorf("cni: list port claims: %w", err)
	}
	out := map[hostPort]string{}
	for _, e := range ents {
		hp, ok := parseClaimName(e.Name())
		if !ok {
			continue
		}
		owner, err := s.owner(hp)
		if err != nil {
			return nil, err
		}
		out[hp] = owner
	}
	return out, nil
}

// pruneClaims removes claims whose owner has no record (left behind if a
// process died between releasing ports and removing the record, or by
// hand). It must only run when no Attach is in flight.
func (s *store) pruneClaims() error {
	cl, err := s.claims()
	if err != nil {
		return err
	}
	for hp, owner := range cl {
		if owner != "" && validID(owner) == nil {
			if _, ok, err := s.load(owner); err != nil || ok {
				continue
			}
		}
		if err := os.Remove(filepath.Join(s.portsDir, hp.claimName())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cni: prune claim of host port %s: %w", hp, err)
		}
	}
	return nil
}

// writeFileAtomic replaces path with data: a crash leaves either the old
// or the new content, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries (creations, renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
