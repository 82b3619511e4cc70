package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// NodeLabelsRequest is the body of PATCH /v1/nodes/{name}/labels: each
// key is set to its value; an empty value removes the key.
type NodeLabelsRequest struct {
	Labels map[string]string `json:"labels"`
}

func (s *Server) nodeRoutes() {
	m := s.mux
	m.HandleFunc("POST /v1/nodes/{name}/cordon", s.auth(s.nodeFlag(func(n *model.Node) { n.Cordoned = true })))
	m.HandleFunc("POST /v1/nodes/{name}/uncordon", s.auth(s.nodeFlag(func(n *model.Node) { n.Cordoned, n.Draining = false, false })))
	m.HandleFunc("POST /v1/nodes/{name}/drain", s.auth(s.nodeFlag(func(n *model.Node) { n.Cordoned, n.Draining = true, true })))
	m.HandleFunc("PATCH /v1/nodes/{name}/labels", s.auth(s.labelNode))
	m.HandleFunc("DELETE /v1/nodes/{name}", s.auth(s.deleteNode))
}

func (s *Server) nodeFlag(set func(*model.Node)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.updateNode(w, r, func(n *model.Node) error { set(n); return nil })
	}
}

func (s *Server) updateNode(w http.ResponseWriter, r *http.Request, mutate func(*model.Node) error) {
	name := r.PathValue("name")
	n, err := store.Update(r.Context(), s.opts.Store, model.NodeKey(name), mutate)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: "no node named " + name + " (see berth node ls)"})
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) labelNode(w http.ResponseWriter, r *http.Request) {
	var req NodeLabelsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", `must be {"labels": {"key": "value"}}: `+err.Error())
		return
	}
	for k := range req.Labels {
		if k == "" || strings.ContainsAny(k, " =") {
			badRequest(w, "labels", "label keys must be non-empty and hold no spaces or '=': "+k)
			return
		}
	}
	s.updateNode(w, r, func(n *model.Node) error {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		for k, v := range req.Labels {
			if v == "" {
				delete(n.Labels, k)
			} else {
				n.Labels[k] = v
			}
		}
		if hasKey(req.Labels, "berth.region") {
			n.Region = n.Labels["berth.region"]
		}
		if hasKey(req.Labels, "berth.zone") {
			n.Zone = n.Labels["berth.zone"]
		}
		return nil
	})
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// deleteNode removes the node object and revokes its agent's
// certificate; its instances are replaced elsewhere.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	kv, err := s.opts.Store.Get(r.Context(), model.NodeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: "no node named " + name + " (see berth node ls)"})
		return
	} else if err != nil {
		s.fail(w, err)
		return
	}
	_, err = s.opts.Store.Txn(r.Context(), store.Txn{Compares: []store.Compare{{Key: kv.Key, ModRev: kv.ModRev}},
		Ops: []store.Op{store.Delete(kv.Key), store.Delete(model.NodeCertKey(name))}})
	if err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
