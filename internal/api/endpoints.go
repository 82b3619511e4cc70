package api

import (
	"net/http"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/store"
)

func (s *Server) endpointRoutes() {
	s.mux.HandleFunc("GET /v1/apps/{name}/endpoints", s.auth(s.appEndpoints))
}

// appEndpoints answers what node DNS serves for an app: its names, the
// ready instances' addresses and its SRV records (dns.AppEndpoints, from
// the same data and rule as the DNS server).
func (s *Server) appEndpoints(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ns, name := namespace(r), r.PathValue("name")
	app, err := s.apps.Get(ctx, ns, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	insts, err := s.apps.Instances(ctx, ns, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	nodes, err := store.ListValues[model.Node](ctx, s.opts.Store, model.PrefixNodes)
	if err != nil {
		s.fail(w, err)
		return
	}
	byName := make(map[string]*model.Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	writeJSON(w, http.StatusOK, dns.AppEndpoints(&app.App, insts, byName))
}
