package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// An app whose image pull needs a secret starts on a `berth agent` node:
// the agent gets the values from the server over mTLS, for its own
// instances only. A missing secret fails the instance with a message
// that names it.
func TestAgentReadsImagePullSecret(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	if _, err := c.c.PutSecret(ctx, "", "regcred", map[string]string{"username": "u", "password": "p"}); err != nil {
		t.Fatal(err)
	}
	c.apply(fmt.Sprintf(mockSpec, "private", 1) + "imagePullSecret: regcred\n")
	c.waitRunning("private", 1)

	c.apply(fmt.Sprintf(mockSpec, "nosecret", 1) + "imagePullSecret: missing\n")
	c.eventually(60*time.Second, func() (bool, string) {
		ins := c.instances("nosecret")
		for _, in := range ins {
			if in.Status.State == model.StateFailed || strings.Contains(in.Status.Message, "missing") {
				return strings.Contains(in.Status.Message, "missing"), in.Status.State + ": " + in.Status.Message
			}
		}
		return false, fmt.Sprintf("%d instances, none failed yet: %+v", len(ins), ins)
	})
}
