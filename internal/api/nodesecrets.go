package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// SecretReader reads a secret's values; the secrets service implements it
// next to SecretStore. Only agents get values, through nodeSecret.
type SecretReader interface {
	Get(ctx context.Context, ns, name string) (map[string]string, error)
}

// nodeSecretRoutes serves secret values to the agents that need them:
// GET /v1/cluster/secrets/{name}?namespace=NS. A node may read a secret
// only while an instance assigned to it belongs to a revision whose spec
// names the secret as its imagePullSecret; everyone else (the admin too:
// values never leave the server through the admin API) gets 403.
func (s *Server) nodeSecretRoutes() {
	s.mux.HandleFunc("GET /v1/cluster/secrets/{name}", s.nodeAuth(s.secrets(s.nodeSecret)))
}

func (s *Server) nodeSecret(w http.ResponseWriter, r *http.Request) {
	id := IdentityFrom(r.Context())
	ns, name := namespace(r), r.PathValue("name")
	reader, ok := s.opts.Secrets.(SecretReader)
	if !ok {
		writeError(w, http.StatusNotImplemented, model.APIError{Code: "not_implemented", Message: "this server cannot read secret values"})
		return
	}
	if id.Admin {
		writeError(w, http.StatusForbidden, model.APIError{Code: "forbidden",
			Message: "secret values are served only to nodes running an instance that uses them"})
		return
	}
	uses, err := s.nodeUsesPullSecret(r.Context(), id.Node, ns, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !uses {
		writeError(w, http.StatusForbidden, model.APIError{Code: "forbidden",
			Message: "node " + id.Node + " runs no instance whose imagePullSecret is " + ns + "/" + name})
		return
	}
	data, err := reader.Get(r.Context(), ns, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, model.SecretRequest{Data: data})
}

// nodeUsesPullSecret reports whether an instance of namespace ns assigned
// to node belongs to a revision with imagePullSecret name.
func (s *Server) nodeUsesPullSecret(ctx context.Context, node, ns, name string) (bool, error) {
	insts, _, err := store.ListJSON[model.Instance](ctx, s.opts.Store, model.PrefixInstances+ns+"/")
	if err != nil {
		return false, err
	}
	seen := map[string]bool{}
	for _, in := range insts {
		i := in.Value
		key := model.RevisionKey(i.Namespace, i.App, i.Revision)
		if i.Node != node || seen[key] {
			continue
		}
		seen[key] = true
		rev, err := store.GetJSON[model.Revision](ctx, s.opts.Store, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		if rev.Value.Spec.ImagePullSecret == name {
			return true, nil
		}
	}
	return false, nil
}
