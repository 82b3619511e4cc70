package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Identity is who sent a request: the admin (bearer token) or one node's
// agent (client certificate with CN = node name).
type Identity struct {
	Admin bool
	// Node is the agent's node name; empty for the admin.
	Node string
}

type identityKey struct{}

// IdentityFrom returns the caller of an authenticated request.
func IdentityFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

// identify authenticates r: a valid admin bearer token, or a client
// certificate the TLS layer verified against the cluster CA and that is
// still the one recorded for its node (berth node rm revokes it).
func (s *Server) identify(r *http.Request) (Identity, error) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1 {
			return Identity{Admin: true}, nil
		}
		return Identity{}, errors.New("missing or invalid token: pass --token, set BERTH_TOKEN, or use the CLI context the server wrote")
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return s.identifyNode(r.Context(), r.TLS.VerifiedChains[0][0])
	}
	return Identity{}, errors.New("missing or invalid token: pass --token, set BERTH_TOKEN, or run on the host where the server wrote the CLI context")
}

// identifyNode authenticates an agent by the client certificate the TLS
// layer verified: it must not have expired (a connection can outlive
// it) and must still be the one recorded for its node (berth node rm
// revokes it).
func (s *Server) identifyNode(ctx context.Context, leaf *x509.Certificate) (Identity, error) {
	node := leaf.Subject.CommonName
	if time.Now().After(leaf.NotAfter) {
		return Identity{}, fmt.Errorf("the certificate of node %s expired at %s; the agent renews it before that, or join again", node, leaf.NotAfter.Format(time.RFC3339))
	}
	rec, err := s.opts.State.NodeCerts.Get(ctx, model.NodeCertKey(node))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Identity{}, fmt.Errorf("the certificate of node %s was revoked (node removed); join again with a new token", node)
		}
		return Identity{}, err
	}
	if rec.Value.Serial != leaf.SerialNumber.Text(16) && rec.Value.PublicKeySHA256 != spkiHash(leaf.RawSubjectPublicKeyInfo) {
		return Identity{}, fmt.Errorf("this certificate of node %s was replaced by another; join again", node)
	}
	return Identity{Node: node}, nil
}

// auth admits only the admin.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return s.authAs(false, h)
}

// nodeAuth admits the admin and agents; handlers authorize by identity.
func (s *Server) nodeAuth(h http.HandlerFunc) http.HandlerFunc {
	return s.authAs(true, h)
}

func (s *Server) authAs(agents bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.identify(r)
		if err != nil {
			writeError(w, http.StatusUnauthorized, model.APIError{Code: "unauthorized", Message: err.Error()})
			return
		}
		if !id.Admin && !agents {
			writeError(w, http.StatusForbidden, model.APIError{Code: "forbidden",
				Message: "node " + id.Node + "'s certificate may not call " + r.Method + " " + r.URL.Path + " (admin only)"})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

func spkiHash(spki []byte) string {
	sum := sha256.Sum256(spki)
	return fmt.Sprintf("%x", sum)
}
