package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// withBindings returns env plus the variables of spec's bindings
// (model.Binding), the bound ports read from the bound apps' current
// specs. A bound app or port that does not exist is an error naming the
// binding, so the start fails visibly and is retried.
func (a *Agent) withBindings(ctx context.Context, ns string, spec *model.AppSpec, env map[string]string) (map[string]string, error) {
	if len(spec.Bind) == 0 {
		return env, nil
	}
	out := make(map[string]string, len(env)+3*len(spec.Bind))
	for k, v := range env {
		out[k] = v
	}
	for i, b := range spec.Bind {
		bns := b.Namespace
		if bns == "" {
			bns = ns
		}
		obj, err := store.GetJSON[model.App](ctx, a.o.Store, model.AppKey(bns, b.App))
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("bind[%d]: app %s does not exist in namespace %s (yet); apply it, or fix bind[%d].app", i, b.App, bns, i)
		}
		if err != nil {
			return nil, fmt.Errorf("bind[%d]: read app %s/%s: %w", i, bns, b.App, err)
		}
		port := 0
		for _, p := range obj.Value.Spec.Ports {
			if p.Name == b.Port {
				port = p.ContainerPort
			}
		}
		if port == 0 {
			return nil, fmt.Errorf("bind[%d]: app %s/%s has no port named %q", i, bns, b.App, b.Port)
		}
		b.Namespace = bns
		for k, v := range model.BindEnv(b, ns, port) {
			out[k] = v
		}
	}
	return out, nil
}
