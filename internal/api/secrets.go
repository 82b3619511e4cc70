package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/berth-dev/berth/internal/model"
)

// SecretStore is what /v1/secrets serves. Values go in and never come out:
// only the agent reads them, to pull images for the instances it runs.
// Errors matching store.ErrNotFound become 404.
type SecretStore interface {
	Put(ctx context.Context, ns, name string, data map[string]string) (model.SecretInfo, error)
	List(ctx context.Context, ns string) ([]model.SecretInfo, error)
	Delete(ctx context.Context, ns, name string) error
}

func (s *Server) secretRoutes() {
	m := s.mux
	m.HandleFunc("PUT /v1/secrets/{name}", s.auth(s.secrets(s.putSecret)))
	m.HandleFunc("GET /v1/secrets", s.auth(s.secrets(s.listSecrets)))
	m.HandleFunc("DELETE /v1/secrets/{name}", s.auth(s.secrets(s.deleteSecret)))
}

// secrets answers 501 when this server keeps no secrets.
func (s *Server) secrets(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Secrets == nil {
			writeError(w, http.StatusNotImplemented, model.APIError{Code: "not_implemented", Message: "this server keeps no secrets"})
			return
		}
		h(w, r)
	}
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) {
	var req model.SecretRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", `must be JSON like {"data": {"username": "...", "password": "..."}}: `+err.Error())
		return
	}
	info, err := s.opts.Secrets.Put(r.Context(), namespace(r), r.PathValue("name"), req.Data)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Secrets.List(r.Context(), namespace(r))
	if err != nil {
		s.fail(w, err)
		return
	}
	if list == nil {
		list = []model.SecretInfo{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Secrets.Delete(r.Context(), namespace(r), r.PathValue("name")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
