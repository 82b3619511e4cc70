package model

import "time"

// Image is one image in a node's image store (driver oci), as listed by
// GET /v1/images.
type Image struct {
	// Names are the references that point at it
	// ("127.0.0.1:5000/busybox:1"), sorted.
	Names []string `json:"names"`
	// Digest is the manifest digest.
	Digest string `json:"digest"`
	// Platform is os/arch[/variant].
	Platform string `json:"platform,omitempty"`
	// Size is the compressed size of its layers in bytes.
	Size   int64 `json:"size"`
	Layers int   `json:"layers"`
	// InUse counts workloads whose root filesystem is made from it.
	InUse    int       `json:"inUse,omitempty"`
	LastUsed time.Time `json:"lastUsed,omitempty"`
}

// PullRequest is the body of POST /v1/images/pull.
type PullRequest struct {
	Ref string `json:"ref"`
	// Username and Password authenticate to the registry; empty means the
	// node's configured credentials (docker config.json) or anonymous.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Platform is os/arch[/variant]; empty means the node's.
	Platform string `json:"platform,omitempty"`
}

// PullProgress is one line of the NDJSON stream POST /v1/images/pull
// answers with. The last line has Done (and Image) or Error set.
type PullProgress struct {
	// Layer is the layer digest the line is about, if any.
	Layer string `json:"layer,omitempty"`
	// Status is what happens: resolving, downloading, exists, verified,
	// unpacking, done.
	Status string `json:"status,omitempty"`
	// Complete and Total are bytes of Layer (or of the whole pull).
	Complete int64  `json:"complete,omitempty"`
	Total    int64  `json:"total,omitempty"`
	Done     bool   `json:"done,omitempty"`
	Image    *Image `json:"image,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ImageGCResult is the answer of POST /v1/images/gc.
type ImageGCResult struct {
	FreedBytes int64    `json:"freedBytes"`
	Removed    []string `json:"removed,omitempty"`
}
