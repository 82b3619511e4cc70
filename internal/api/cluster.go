package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/store"
)

// TokenCreateRequest is the body of POST /v1/tokens.
type TokenCreateRequest struct {
	// TTL is a Go duration ("1h"); empty or "0" never expires.
	TTL         string `json:"ttl,omitempty"`
	Description string `json:"description,omitempty"`
}

func (s *Server) clusterRoutes() {
	if s.opts.CA == nil {
		return
	}
	m := s.mux
	m.HandleFunc("POST /v1/tokens", s.auth(s.createToken))
	m.HandleFunc("GET /v1/tokens", s.auth(s.listTokens))
	m.HandleFunc("DELETE /v1/tokens/{id}", s.auth(s.revokeToken))
	m.HandleFunc("POST /v1/cluster/join", s.join)
	m.HandleFunc("POST /v1/cluster/renew", s.nodeAuth(s.renew))
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenCreateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", `must be {"ttl": "1h"}: `+err.Error())
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < 0 {
			badRequest(w, "ttl", "must be a duration like 1h or 30m")
			return
		}
	}
	tok := pki.NewJoinToken(s.opts.CA.Fingerprint())
	now := time.Now().UTC()
	jt := model.JoinToken{ID: tok.ID, SecretHash: tok.SecretHash(), Description: req.Description, CreatedAt: now}
	if ttl > 0 {
		jt.ExpiresAt = now.Add(ttl)
	}
	if _, err := store.PutJSON(r.Context(), s.opts.Store, model.JoinTokenKey(jt.ID), jt, 0); err != nil {
		s.fail(w, err)
		return
	}
	jt.SecretHash = ""
	writeJSON(w, http.StatusCreated, model.CreatedJoinToken{JoinToken: jt, Token: tok.String()})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := store.ListValues[model.JoinToken](r.Context(), s.opts.Store, model.PrefixJoinTokens)
	if err != nil {
		s.fail(w, err)
		return
	}
	for i := range list {
		list[i].SecretHash = ""
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	jt, err := store.Update(r.Context(), s.opts.Store, model.JoinTokenKey(id), func(t *model.JoinToken) error {
		t.Revoked = true
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: "no join token with ID " + id + " (see berth token ls)"})
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	jt.SecretHash = ""
	writeJSON(w, http.StatusOK, jt)
}

// join checks a join token and signs the agent's CSR. It is the one
// endpoint that needs no credentials but the token.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req model.JoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", "must be a join request: "+err.Error())
		return
	}
	tok, err := pki.ParseJoinToken(req.Token)
	if err != nil {
		tokenRefused(w, "token_malformed", err.Error())
		return
	}
	if tok.CAFingerprint != s.opts.CA.Fingerprint() {
		tokenRefused(w, "token_wrong_cluster", "the join token was made by another cluster's CA (fingerprint mismatch); create one with 'berth token create' on this server")
		return
	}
	key := model.JoinTokenKey(tok.ID)
	o, err := store.GetJSON[model.JoinToken](r.Context(), s.opts.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		tokenRefused(w, "token_unknown", "join token "+tok.ID+" is unknown to this server (see berth token ls)")
		return
	} else if err != nil {
		s.fail(w, err)
		return
	}
	jt := o.Value
	switch {
	case subtle.ConstantTimeCompare([]byte(jt.SecretHash), []byte(tok.SecretHash())) != 1:
		tokenRefused(w, "token_invalid", "join token "+tok.ID+": the secret does not match")
		return
	case jt.Revoked:
		tokenRefused(w, "token_revoked", "join token "+tok.ID+" was revoked; create a new one with 'berth token create'")
		return
	case !jt.ExpiresAt.IsZero() && time.Now().After(jt.ExpiresAt):
		tokenRefused(w, "token_expired", "join token "+tok.ID+" expired at "+jt.ExpiresAt.Format(time.RFC3339)+"; create a new one with 'berth token create'")
		return
	}
	if !s.issue(w, r, req) {
		return
	}
	_ = s.tokenUses.add(r.Context(), key) // a count: the join stands without it
}

// renew signs a new certificate for the calling agent (mTLS).
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	var req model.JoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", "must be a renew request: "+err.Error())
		return
	}
	id := IdentityFrom(r.Context())
	if id.Admin || req.Node != id.Node {
		writeError(w, http.StatusForbidden, model.APIError{Code: "forbidden", Message: "an agent renews only its own certificate (node " + id.Node + ")"})
		return
	}
	s.issue(w, r, req)
}

// issue signs req's CSR for req.Node unless another key holds that name.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, req model.JoinRequest) bool {
	if msg := model.ValidateNodeName(req.Node); msg != "" {
		badRequest(w, "node", msg)
		return false
	}
	csr, err := pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		badRequest(w, "csrPEM", err.Error())
		return false
	}
	if csr.Subject.CommonName != req.Node {
		badRequest(w, "csrPEM", "the CSR's common name must be the node name "+req.Node)
		return false
	}
	keyHash := spkiHash(csr.RawSubjectPublicKeyInfo)
	recKey := model.NodeCertKey(req.Node)
	cur, err := store.GetJSON[model.NodeCert](r.Context(), s.opts.Store, recKey)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.fail(w, err)
		return false
	}
	renewing := IdentityFrom(r.Context()).Node == req.Node
	if err == nil && !renewing && cur.Value.PublicKeySHA256 != keyHash && time.Now().Before(cur.Value.NotAfter) {
		writeError(w, http.StatusConflict, model.APIError{Code: "node_name_taken",
			Message: "node name " + req.Node + " is held by another agent's certificate (valid until " +
				cur.Value.NotAfter.Format(time.RFC3339) + "); pick another --node-name, or remove the node with 'berth node rm " + req.Node + "'"})
		return false
	}
	certPEM, cert, err := s.opts.CA.SignClient([]byte(req.CSRPEM), req.Node, s.opts.ClientCertTTL)
	if err != nil {
		badRequest(w, "csrPEM", err.Error())
		return false
	}
	rec := model.NodeCert{Node: req.Node, PublicKeySHA256: keyHash, Serial: cert.SerialNumber.Text(16),
		NotAfter: cert.NotAfter.UTC(), IssuedAt: time.Now().UTC()}
	if _, err := store.PutJSON(r.Context(), s.opts.Store, recKey, rec, cur.ModRev); err != nil {
		s.fail(w, err)
		return false
	}
	writeJSON(w, http.StatusOK, model.JoinResponse{CertPEM: string(certPEM), CAPEM: string(s.opts.CA.CertPEM), NotAfter: cert.NotAfter})
	return true
}

func tokenRefused(w http.ResponseWriter, code, msg string) {
	status := http.StatusUnauthorized
	if strings.HasSuffix(code, "malformed") {
		status = http.StatusBadRequest
	}
	writeError(w, status, model.APIError{Code: code, Message: msg})
}
