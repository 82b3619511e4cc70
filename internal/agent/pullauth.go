package agent

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/model"
)

// registryAuth reads an app's imagePullSecret into driver credentials;
// no secret means none.
func (a *Agent) registryAuth(ctx context.Context, ns, secret string) (*driver.RegistryAuth, error) {
	if secret == "" {
		return nil, nil
	}
	if a.o.Secrets == nil {
		return nil, fmt.Errorf("imagePullSecret %q: this node has no access to secrets", secret)
	}
	data, err := a.o.Secrets.Get(ctx, ns, secret)
	if err != nil {
		return nil, fmt.Errorf("imagePullSecret: %w", err)
	}
	auth := &driver.RegistryAuth{Username: data[model.SecretUsername], Password: data[model.SecretPassword],
		DockerConfig: []byte(data[model.SecretDockerConfig])}
	if auth.Username == "" && len(auth.DockerConfig) == 0 {
		return nil, fmt.Errorf("imagePullSecret %q has neither %q nor %q", secret, model.SecretUsername, model.SecretDockerConfig)
	}
	return auth, nil
}
