package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/berth-dev/berth/internal/model"
)

// ImageStore is the node image store behind /v1/images (berth up's local
// node; driver oci runs from it). Errors wrapping ErrImageNotFound become
// 404, ErrImageInUse 409, ErrBadImageRef 400.
type ImageStore interface {
	List(ctx context.Context) ([]model.Image, error)
	Pull(ctx context.Context, req model.PullRequest, progress func(model.PullProgress)) (model.Image, error)
	Remove(ctx context.Context, ref string) error
	// Import loads a `docker save` tarball or a tar of an OCI layout.
	Import(ctx context.Context, r io.Reader) ([]model.Image, error)
	GC(ctx context.Context, maxBytes int64) (model.ImageGCResult, error)
}

// Image store error kinds the API maps to status codes.
var (
	ErrImageNotFound = errors.New("image not found")
	ErrImageInUse    = errors.New("image in use")
	ErrBadImageRef   = errors.New("invalid image reference")
)

// maxImportBytes bounds an uploaded image archive.
const maxImportBytes = 16 << 30

func (s *Server) imageRoutes() {
	m := s.mux
	m.HandleFunc("GET /v1/images", s.auth(s.images(s.listImages)))
	m.HandleFunc("POST /v1/images/pull", s.auth(s.images(s.pullImage)))
	m.HandleFunc("POST /v1/images/import", s.auth(s.images(s.importImage)))
	m.HandleFunc("POST /v1/images/gc", s.auth(s.images(s.gcImages)))
	m.HandleFunc("DELETE /v1/images", s.auth(s.images(s.removeImage)))
}

// images answers 501 when this server has no image store.
func (s *Server) images(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Images == nil {
			writeError(w, http.StatusNotImplemented, model.APIError{Code: "not_implemented",
				Message: "this server has no image store (driver oci is not enabled on it)"})
			return
		}
		h(w, r)
	}
}

func (s *Server) imageFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrImageNotFound):
		writeError(w, http.StatusNotFound, model.APIError{Code: "not_found", Message: err.Error()})
	case errors.Is(err, ErrImageInUse):
		writeError(w, http.StatusConflict, model.APIError{Code: "conflict", Message: err.Error()})
	case errors.Is(err, ErrBadImageRef):
		badRequest(w, "ref", err.Error())
	default:
		s.fail(w, err)
	}
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Images.List(r.Context())
	if err != nil {
		s.imageFail(w, err)
		return
	}
	if list == nil {
		list = []model.Image{}
	}
	writeJSON(w, http.StatusOK, list)
}

// pullImage streams progress as NDJSON; the last line says done or error.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	var req model.PullRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		badRequest(w, "body", "must be JSON like {\"ref\": \"host/name:tag\"}: "+err.Error())
		return
	}
	if req.Ref == "" {
		badRequest(w, "ref", "is required")
		return
	}
	if verr := model.ValidateImageRef(req.Ref); verr != "" {
		badRequest(w, "ref", verr)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(p model.PullProgress) {
		_ = enc.Encode(p)
		if flusher != nil {
			flusher.Flush()
		}
	}
	img, err := s.opts.Images.Pull(r.Context(), req, send)
	if err != nil {
		send(model.PullProgress{Error: err.Error()})
		return
	}
	send(model.PullProgress{Done: true, Status: "done", Image: &img})
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.opts.Images.Import(r.Context(), http.MaxBytesReader(w, r.Body, maxImportBytes))
	if err != nil {
		badRequest(w, "body", "cannot import: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, imgs)
}

func (s *Server) gcImages(w http.ResponseWriter, r *http.Request) {
	var max int64
	if v := r.URL.Query().Get("maxBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			badRequest(w, "maxBytes", "must be a whole number of bytes >= 0")
			return
		}
		max = n
	}
	res, err := s.opts.Images.GC(r.Context(), max)
	if err != nil {
		s.imageFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		badRequest(w, "ref", "is required (DELETE /v1/images?ref=...)")
		return
	}
	if err := s.opts.Images.Remove(r.Context(), ref); err != nil {
		s.imageFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
