package model

// APIError is the JSON body of every non-2xx answer of the /v1 API.
type APIError struct {
	// Code is a stable machine-readable kind: invalid, unauthorized,
	// forbidden, not_found, conflict, internal.
	Code string `json:"code"`
	// Message is for humans.
	Message string `json:"error"`
	// Fields lists invalid spec fields for Code "invalid".
	Fields []FieldError `json:"fields,omitempty"`
	// Revision is the app's current revision for Code "conflict".
	Revision int64 `json:"revision,omitempty"`
}

// ScaleRequest is the body of POST /v1/apps/{name}/scale.
type ScaleRequest struct {
	Instances int `json:"instances"`
}

// VersionInfo is the answer of GET /v1/version.
type VersionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Store   string `json:"store,omitempty"`
}
