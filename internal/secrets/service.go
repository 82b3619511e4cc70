package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// ErrNotFound is matched (errors.Is) by the error for a secret that does
// not exist; so is store.ErrNotFound, which the API answers with 404.
var ErrNotFound = errors.New("secret not found")

// notFound names the missing secret.
type notFound struct{ ns, name string }

func (e notFound) Error() string {
	return fmt.Sprintf("secret %q not found in namespace %s (create it with 'berth secret set')", e.name, e.ns)
}

func (e notFound) Is(target error) bool { return target == ErrNotFound || target == store.ErrNotFound }

// maxValueBytes bounds one secret's values.
const maxValueBytes = 256 << 10

// Service stores and reads secrets. Values go into the store sealed.
type Service struct {
	Store store.Store
	Box   *Box
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Put creates or replaces secret ns/name with data.
func (s *Service) Put(ctx context.Context, ns, name string, data map[string]string) (model.SecretInfo, error) {
	if verr := validate(ns, name, data); verr != nil {
		return model.SecretInfo{}, verr
	}
	key := model.SecretKey(ns, name)
	plain, err := json.Marshal(data)
	if err != nil {
		return model.SecretInfo{}, err
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for {
		cur, err := store.GetJSON[model.StoredSecret](ctx, s.Store, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return model.SecretInfo{}, err
		}
		now := s.now()
		info := model.SecretInfo{Namespace: ns, Name: name, Keys: keys, CreatedAt: now, UpdatedAt: now}
		if err == nil {
			info.CreatedAt = cur.Value.CreatedAt
		}
		rec := model.StoredSecret{SecretInfo: info, Sealed: s.Box.Seal(plain, []byte(key))}
		_, err = store.PutJSON(ctx, s.Store, key, rec, cur.ModRev)
		if errors.Is(err, store.ErrConflict) {
			continue // a concurrent Put; the last one wins
		}
		return info, err
	}
}

// List describes the secrets of ns, without values.
func (s *Service) List(ctx context.Context, ns string) ([]model.SecretInfo, error) {
	objs, _, err := store.ListJSON[model.StoredSecret](ctx, s.Store, model.PrefixSecrets+ns+"/")
	if err != nil {
		return nil, err
	}
	out := make([]model.SecretInfo, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Value.SecretInfo)
	}
	return out, nil
}

// Delete removes a secret; a missing one is ErrNotFound.
func (s *Service) Delete(ctx context.Context, ns, name string) error {
	key := model.SecretKey(ns, name)
	cur, err := store.GetJSON[model.StoredSecret](ctx, s.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound{ns, name}
	}
	if err != nil {
		return err
	}
	_, err = s.Store.Txn(ctx, store.Txn{Compares: []store.Compare{{Key: key, ModRev: cur.ModRev}}, Ops: []store.Op{store.Delete(key)}})
	return err
}

// Get returns a secret's values (for the agent; never served by the API).
func (s *Service) Get(ctx context.Context, ns, name string) (map[string]string, error) {
	key := model.SecretKey(ns, name)
	cur, err := store.GetJSON[model.StoredSecret](ctx, s.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound{ns, name}
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.Box.Open(cur.Value.Sealed, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return data, nil
}

// validate checks a secret's name and values.
func validate(ns, name string, data map[string]string) *model.ValidationError {
	var errs []model.FieldError
	if msg := model.CheckDNSLabel(name); msg != "" {
		errs = append(errs, model.FieldError{Field: "name", Message: msg})
	}
	if msg := model.CheckDNSLabel(ns); msg != "" {
		errs = append(errs, model.FieldError{Field: "namespace", Message: msg})
	}
	if len(data) == 0 {
		errs = append(errs, model.FieldError{Field: "data", Message: "must hold at least one key"})
	}
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
		if !model.ValidSecretKey(k) {
			errs = append(errs, model.FieldError{Field: fmt.Sprintf("data[%q]", k), Message: "key must be 1-253 characters of letters, digits, '.', '_' and '-'"})
		}
	}
	if size > maxValueBytes {
		errs = append(errs, model.FieldError{Field: "data", Message: fmt.Sprintf("must be at most %d bytes in all, got %d", maxValueBytes, size)})
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
	return &model.ValidationError{Errors: errs}
}
