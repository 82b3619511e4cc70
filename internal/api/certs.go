package api

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// CertRequest is the body of PUT /v1/certs/{name}.
type CertRequest struct {
	// CertPEM is the PEM certificate chain, leaf first.
	CertPEM string `json:"certPEM"`
	// KeyPEM is the PEM private key of the leaf.
	KeyPEM string `json:"keyPEM"`
}

func (s *Server) certRoutes() {
	s.mux.HandleFunc("PUT /v1/certs/{name}", s.auth(s.putCert))
	s.mux.HandleFunc("GET /v1/certs", s.auth(s.listCerts))
	s.mux.HandleFunc("DELETE /v1/certs/{name}", s.auth(s.deleteCert))
}

// putCert stores a certificate the router serves by SNI; the answer
// leaves the key out.
func (s *Server) putCert(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if msg := model.ValidateCertName(name); msg != "" {
		badRequest(w, "name", msg)
		return
	}
	var req CertRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, "body", `must be {"certPEM": "...", "keyPEM": "..."}: `+err.Error())
		return
	}
	pair, err := tls.X509KeyPair([]byte(req.CertPEM), []byte(req.KeyPEM))
	if err != nil {
		badRequest(w, "certPEM", "certificate and key do not load together: "+err.Error())
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		badRequest(w, "certPEM", "cannot parse the leaf certificate: "+err.Error())
		return
	}
	if len(leaf.DNSNames) == 0 {
		badRequest(w, "certPEM", "the certificate names no DNS names (subjectAltName); the router chooses certificates by them")
		return
	}
	c := model.Certificate{Name: name, CertPEM: req.CertPEM, KeyPEM: req.KeyPEM, DNSNames: leaf.DNSNames,
		NotAfter: leaf.NotAfter.UTC(), UpdatedAt: time.Now().UTC()}
	b, _ := json.Marshal(c)
	if _, err := s.opts.Store.Txn(r.Context(), store.Txn{Ops: []store.Op{store.Put(model.CertKey(name), b)}}); err != nil {
		s.fail(w, err)
		return
	}
	c.KeyPEM = ""
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request) {
	list, err := store.ListValues[model.Certificate](r.Context(), s.opts.Store, model.PrefixCerts)
	if err != nil {
		s.fail(w, err)
		return
	}
	for i := range list {
		list[i].KeyPEM = ""
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) deleteCert(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	key := model.CertKey(name)
	if _, err := s.opts.Store.Get(r.Context(), key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: "no certificate named " + name})
			return
		}
		s.fail(w, err)
		return
	}
	if _, err := s.opts.Store.Txn(r.Context(), store.Txn{Ops: []store.Op{store.Delete(key)}}); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
