// Package api serves berth's REST API under /v1. Handlers validate input,
// call the apps service or read the store, and never talk to agents or
// drivers directly (logs go through the LogSource seam).
package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-dev/berth/internal/apps"
	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/workers"
)

// LogSource streams an instance's logs from wherever it runs.
type LogSource interface {
	InstanceLogs(ctx context.Context, inst model.Instance, follow bool, tail int) (io.ReadCloser, error)
}

// Options configure the API server.
type Options struct {
	Store store.Store
	// State is the server's shared view of instances, nodes and node
	// certificates, read by every agent request's checks (a private one
	// when nil).
	State *state.State
	// AdminToken is the bearer token with full access.
	AdminToken string
	Logs       LogSource
	// Images is the local node's image store; nil disables /v1/images.
	Images ImageStore
	// Secrets keeps secrets (values sealed at rest); nil disables
	// /v1/secrets.
	Secrets SecretStore
	Version model.VersionInfo
	Log     *slog.Logger
	// CA, when set, turns on the cluster endpoints: join tokens, agent
	// join and certificate renewal. Agents authenticate with client
	// certificates it signed (the TLS listener must verify them).
	CA *pki.CA
	// ClientCertTTL is the lifetime of agent certificates (default
	// pki.DefaultClientTTL).
	ClientCertTTL time.Duration
	// Liveness, when set, keeps agents' heartbeats that change nothing
	// else in memory instead of the store (the node controller reads it).
	Liveness *nodes.Liveness
}

// Server is the /v1 HTTP handler.
type Server struct {
	opts  Options
	apps  *apps.Service
	mux   *http.ServeMux
	token [32]byte
	log   *slog.Logger
	// nodeWatch fans the instance watch out to agents (storeapi.go).
	nodeWatch nodeWatch
	// sessions are the agents' sessions (session.go).
	sessions sessionHub
	// frameWorkers handle the sessions' frames, so that each session's
	// own goroutine, waiting in Read, keeps a small stack.
	frameWorkers *workers.Pool
	// tokenUses counts joins per token (tokenuses.go).
	tokenUses *tokenUses
}

// maxBodyBytes bounds request bodies (specs are small).
const maxBodyBytes = 1 << 20

// New builds the handler.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.State = state.Or(opts.State, opts.Store, opts.Log)
	s := &Server{opts: opts, apps: &apps.Service{Store: opts.Store}, mux: http.NewServeMux(),
		token: sha256.Sum256([]byte(opts.AdminToken)), log: opts.Log, tokenUses: newTokenUses(opts.Store), frameWorkers: workers.New(0, 0)}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	m.HandleFunc("GET /v1/version", s.auth(s.version))
	m.HandleFunc("POST /v1/apps", s.auth(s.applyApp))
	m.HandleFunc("GET /v1/apps", s.auth(s.listApps))
	m.HandleFunc("GET /v1/apps/{name}", s.auth(s.getApp))
	m.HandleFunc("DELETE /v1/apps/{name}", s.auth(s.deleteApp))
	m.HandleFunc("POST /v1/apps/{name}/scale", s.auth(s.scaleApp))
	m.HandleFunc("GET /v1/apps/{name}/revisions", s.auth(s.listRevisions))
	m.HandleFunc("GET /v1/apps/{name}/revisions/{n}", s.auth(s.getRevision))
	m.HandleFunc("GET /v1/apps/{name}/instances", s.auth(s.appInstances))
	m.HandleFunc("GET /v1/apps/{name}/logs", s.auth(s.appLogs))
	m.HandleFunc("GET /v1/instances", s.auth(s.listInstances))
	m.HandleFunc("GET /v1/nodes", s.auth(s.listNodes))
	m.HandleFunc("GET /v1/nodes/{name}", s.auth(s.getNode))
	m.HandleFunc("GET /v1/events", s.auth(s.listEvents))
	s.rolloutRoutes()
	s.imageRoutes()
	s.secretRoutes()
	s.nodeSecretRoutes()
	s.certRoutes()
	s.clusterRoutes()
	s.storeRoutes()
	s.sessionRoutes()
	s.nodeRoutes()
	s.endpointRoutes()
	s.viewRoutes()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.mux.ServeHTTP(w, r)
	s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start))
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.opts.Version)
}

// namespace returns the ?namespace= query value or the default.
func namespace(r *http.Request) string {
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		return ns
	}
	return model.DefaultNamespace
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, e model.APIError) {
	writeJSON(w, code, e)
}

// fail maps an error from the service layer to an HTTP answer.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var verr *model.ValidationError
	var cerr *apps.ConflictError
	switch {
	case errors.As(err, &verr):
		writeError(w, http.StatusBadRequest, model.APIError{Code: "invalid", Message: verr.Error(), Fields: verr.Errors})
	case errors.As(err, &cerr):
		writeError(w, http.StatusConflict, model.APIError{Code: "conflict", Message: cerr.Error(), Revision: cerr.Revision})
	case apps.IsConflict(err):
		writeError(w, http.StatusConflict, model.APIError{Code: "conflict", Message: err.Error()})
	case errors.Is(err, apps.ErrNotFound), errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: err.Error()})
	case errors.Is(err, context.Canceled):
		// client went away
	default:
		s.log.Error("api", "err", err)
		writeError(w, http.StatusInternalServerError, model.APIError{Code: "internal", Message: err.Error()})
	}
}

func badRequest(w http.ResponseWriter, field, msg string) {
	writeError(w, http.StatusBadRequest, model.APIError{Code: "invalid", Message: field + ": " + msg,
		Fields: []model.FieldError{{Field: field, Message: msg}}})
}
