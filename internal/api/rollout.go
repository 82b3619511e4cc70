package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/berth-dev/berth/internal/model"
)

func (s *Server) rolloutRoutes() {
	s.mux.HandleFunc("GET /v1/apps/{name}/rollout", s.auth(s.getRollout))
	s.mux.HandleFunc("POST /v1/apps/{name}/rollout/{action}", s.auth(s.rolloutAction))
}

// getRollout answers a model.RolloutView.
func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) {
	v, err := s.apps.Rollout(r.Context(), namespace(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// rolloutAction records pause, resume, promote, abort or undo; the body
// is optional: {"toRevision": N} for undo, {"full": true} for promote.
func (s *Server) rolloutAction(w http.ResponseWriter, r *http.Request) {
	var req model.RolloutRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		badRequest(w, "body", `must be empty or {"toRevision": N} or {"full": true}: `+err.Error())
		return
	}
	if req.ToRevision < 0 {
		badRequest(w, "toRevision", "must be a revision number >= 1")
		return
	}
	req.Action = r.PathValue("action")
	v, err := s.apps.RequestRollout(r.Context(), namespace(r), r.PathValue("name"), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, v)
}
