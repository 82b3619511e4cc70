package model

import "time"

// PrefixSecrets holds secrets; their values are sealed (encrypted) in the
// store and never returned by the API.
const PrefixSecrets = "/secrets/"

// SecretKey is where a secret is stored.
func SecretKey(ns, name string) string { return PrefixSecrets + ns + "/" + name }

// Secret keys with a meaning to berth.
const (
	// SecretUsername and SecretPassword are registry credentials for an
	// app's imagePullSecret.
	SecretUsername = "username"
	SecretPassword = "password"
	// SecretDockerConfig is a docker config.json, an alternative to
	// username/password for imagePullSecret.
	SecretDockerConfig = ".dockerconfigjson"
)

// SecretInfo describes a secret without its values (GET /v1/secrets).
type SecretInfo struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Keys      []string  `json:"keys"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// StoredSecret is a secret as stored: its description and its values,
// sealed by the server's key.
type StoredSecret struct {
	SecretInfo
	// Sealed is the AES-256-GCM sealed JSON of the values.
	Sealed []byte `json:"sealed"`
}

// SecretRequest is the body of PUT /v1/secrets/{name}.
type SecretRequest struct {
	Data map[string]string `json:"data"`
}
