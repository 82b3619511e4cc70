package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/berth-dev/berth/internal/model"
)

// applyApp accepts a spec as JSON or YAML (strict either way).
func (s *Server) applyApp(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			badRequest(w, "body", "spec larger than 1 MiB")
			return
		}
		badRequest(w, "body", err.Error())
		return
	}
	spec, err := model.ParseSpec(body)
	if err != nil {
		s.fail(w, err)
		return
	}
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		if spec.Namespace != "" && spec.Namespace != ns {
			badRequest(w, "namespace", fmt.Sprintf("the spec says %q but the request is for namespace %q", spec.Namespace, ns))
			return
		}
		spec.Namespace = ns
	}
	res, err := s.apps.Apply(r.Context(), spec)
	if err != nil {
		s.fail(w, err)
		return
	}
	code := http.StatusOK
	if res.Changed && res.App.Revision == 1 && res.NewRevision {
		code = http.StatusCreated
	}
	writeJSON(w, code, res)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	ns := namespace(r)
	if r.URL.Query().Get("allNamespaces") == "true" {
		ns = ""
	}
	list, err := s.apps.List(r.Context(), ns)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	v, err := s.apps.Get(r.Context(), namespace(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	app, err := s.apps.Delete(r.Context(), namespace(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, app)
}

func (s *Server) scaleApp(w http.ResponseWriter, r *http.Request) {
	var req model.ScaleRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, "instances", "body must be {\"instances\": N}: "+err.Error())
		return
	}
	app, err := s.apps.Scale(r.Context(), namespace(r), r.PathValue("name"), req.Instances)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, app)
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) {
	revs, err := s.apps.Revisions(r.Context(), namespace(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, revs)
}

func (s *Server) getRevision(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 1 {
		badRequest(w, "revision", "must be a positive number")
		return
	}
	rev, err := s.apps.Revision(r.Context(), namespace(r), r.PathValue("name"), n)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rev)
}

func (s *Server) appInstances(w http.ResponseWriter, r *http.Request) {
	insts, err := s.apps.AppInstances(r.Context(), namespace(r), r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, insts)
}
