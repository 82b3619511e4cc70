package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/client"
)

const chattySpec = `name: %s
driver: process
command: ["/bin/sh", "-c", "echo line-from-pid-$$; exec /bin/sleep 100000"]
instances: %d
resources: {cpu: 0.05, memory: 16Mi}
`

// berth logs works in a cluster: the server reads each instance's logs
// from the agent of its node over mTLS, with follow.
func TestLogsFromRemoteAgents(t *testing.T) {
	c := newCluster(t, 2)
	c.apply(fmt.Sprintf(chattySpec, "chatty", 2))
	c.waitRunning("chatty", 2)
	ctx := context.Background()
	// Each instance prints one line with its PID: both must come back.
	c.eventually(30*time.Second, func() (bool, string) {
		rc, err := c.c.Logs(ctx, "", "chatty", client.LogOptions{})
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		return len(linesWith(string(b), "line-from-pid-")) == 2, fmt.Sprintf("want two instances' lines in %q", b)
	})
	// Follow streams until the caller stops.
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rc, err := c.c.Logs(fctx, "", "chatty", client.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if fctx.Err() == nil {
		t.Fatalf("follow ended before the caller stopped: %q", b)
	}
	if len(linesWith(string(b), "line-from-pid-")) != 2 {
		t.Fatalf("follow: want two instances' lines in %q", b)
	}
}

// linesWith returns the distinct lines of s that contain sub.
func linesWith(s, sub string) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out[l] = true
		}
	}
	return out
}
