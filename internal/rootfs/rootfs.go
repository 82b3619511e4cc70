// Package rootfs is the seam between an image store and the drivers that
// run bundles from it: a driver asks for a writable root filesystem for one
// workload and gives it back when the workload is removed.
package rootfs

import "context"

// ImageConfig is the part of an image's configuration a driver needs to
// build a process: what to run and how, when the task does not say.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Env is KEY=VALUE pairs.
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Mount is a prepared root filesystem.
type Mount struct {
	// Path is the directory to use as the bundle's root.
	Path string
	// Config is the image's configuration.
	Config ImageConfig
}

// Provider prepares root filesystems. Implementations are safe for
// concurrent use.
type Provider interface {
	// Prepare returns a writable root filesystem for workload id made from
	// image ref, pulling the image first if it is missing (with the
	// Credentials ctx carries, else the provider's own). Calling it again
	// for the same id returns the same filesystem (after an agent restart,
	// too). Errors carry the registry's or the store's message.
	Prepare(ctx context.Context, ref, id string) (Mount, error)
	// Release unmounts and deletes id's writable layer. Releasing an
	// unknown id is not an error.
	Release(ctx context.Context, id string) error
}

// Credentials authenticate the pull Prepare may make: a user name and
// password, or a docker config.json.
type Credentials struct {
	Username, Password string
	DockerConfig       []byte
}

type credentialsKey struct{}

// WithCredentials returns ctx carrying pull credentials for Prepare.
func WithCredentials(ctx context.Context, c Credentials) context.Context {
	return context.WithValue(ctx, credentialsKey{}, c)
}

// CredentialsFrom returns the pull credentials ctx carries, if any.
func CredentialsFrom(ctx context.Context) (Credentials, bool) {
	c, ok := ctx.Value(credentialsKey{}).(Credentials)
	return c, ok
}
