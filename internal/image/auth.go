package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Auth says how to authenticate to a registry. Explicit credentials win
// over ConfigPath; with neither, pulls are anonymous. Both basic auth and
// the bearer-token flow (a token server named by the registry's
// WWW-Authenticate challenge) are handled with these credentials.
type Auth struct {
	// Username and Password are explicit credentials (e.g. from a berth
	// secret).
	Username string
	Password string
	// RegistryToken is a bearer token sent as is, for registries that hand
	// out tokens some other way.
	RegistryToken string
	// ConfigPath is a docker config.json; its auths.<registry> entry for
	// the image's registry is used (auth, or username and password, or
	// identitytoken). Credential helpers (credsStore) are not run.
	ConfigPath string
	// ConfigJSON is the content of a docker config.json (from a berth
	// secret), read like ConfigPath.
	ConfigJSON []byte
}

func (a Auth) empty() bool {
	return a.Username == "" && a.Password == "" && a.RegistryToken == "" && a.ConfigPath == "" && len(a.ConfigJSON) == 0
}

// dockerConfig is the part of ~/.docker/config.json berth reads.
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// authenticator returns the authenticator for registry (host[:port], as
// name.Registry.RegistryStr returns it).
func (a Auth) authenticator(registry string) (authn.Authenticator, error) {
	switch {
	case a.Username != "" || a.Password != "":
		return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password}), nil
	case a.RegistryToken != "":
		return authn.FromConfig(authn.AuthConfig{RegistryToken: a.RegistryToken}), nil
	case len(a.ConfigJSON) > 0:
		cfg, err := configAuthFrom(a.ConfigJSON, "the secret's .dockerconfigjson", registry)
		if err != nil {
			return nil, err
		}
		return authn.FromConfig(cfg), nil
	case a.ConfigPath != "":
		cfg, err := configAuth(a.ConfigPath, registry)
		if err != nil {
			return nil, err
		}
		return authn.FromConfig(cfg), nil
	}
	return authn.Anonymous, nil
}

// configAuth reads docker config file path and returns the credentials for
// registry; no entry means anonymous.
func configAuth(path, registry string) (authn.AuthConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return authn.AuthConfig{}, fmt.Errorf("registry credentials: %w", err)
	}
	return configAuthFrom(b, path, registry)
}

// configAuthFrom is configAuth for config.json content b, named path in
// errors.
func configAuthFrom(b []byte, path, registry string) (authn.AuthConfig, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return authn.AuthConfig{}, fmt.Errorf("registry credentials: %s is not a docker config.json: %w", path, err)
	}
	want := authKey(registry)
	for key, e := range cfg.Auths {
		if authKey(key) != want {
			continue
		}
		out := authn.AuthConfig{
			Username:      e.Username,
			Password:      e.Password,
			IdentityToken: e.IdentityToken,
			RegistryToken: e.RegistryToken,
		}
		if e.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
			if err != nil {
				return authn.AuthConfig{}, fmt.Errorf("registry credentials: %s: auths.%q.auth is not base64: %w", path, key, err)
			}
			user, pass, ok := strings.Cut(string(dec), ":")
			if !ok {
				return authn.AuthConfig{}, fmt.Errorf("registry credentials: %s: auths.%q.auth is not user:password", path, key)
			}
			out.Username, out.Password = user, pass
		}
		return out, nil
	}
	return authn.AuthConfig{}, nil
}

// authKey normalises a config.json auths key or a registry name to a bare
// host[:port]: "https://index.docker.io/v1/", "docker.io" and
// "index.docker.io" are all Docker Hub.
func authKey(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			s = u.Host
		}
	}
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "index.docker.io"
	}
	return s
}

// ConfigCredentials returns the user name and password a docker
// config.json (content b) holds for the registry of image ref; empty
// strings when it has none.
func ConfigCredentials(b []byte, ref string) (username, password string, err error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	cfg, err := configAuthFrom(b, "the docker config", r.Context().RegistryStr())
	return cfg.Username, cfg.Password, err
}
