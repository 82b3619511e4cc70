// Package bench measures berth against the plain runtime it drives. Its
// figures go in issue notes and docs; tests never assert on them.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/model"
)

// DeployOptions configure RunDeploy.
type DeployOptions struct {
	// Counts are the instance counts to measure (e.g. 1, 10, 50).
	Counts []int
	// Rounds per count; the median is reported.
	Rounds int
	Image  string
	Out    io.Writer
}

// DeployResult is one row of the table.
type DeployResult struct {
	Instances int
	Berth     time.Duration
	Plain     time.Duration
}

const benchLabel = "berth.bench"

// RunDeploy starts a private berth (temp data dir, loopback port) and, for
// each count, times `apply` until every instance runs, then times the same
// containers created and started by a plain loop over the Docker API. It
// removes everything it created.
func RunDeploy(ctx context.Context, o DeployOptions) ([]DeployResult, error) {
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	runID := randHex(3)
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	defer removeLabelled(dc, benchLabel+"="+runID)

	dir, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c, stop, err := startDaemon(ctx, dir, runID)
	if err != nil {
		return nil, err
	}
	defer stop()

	var results []DeployResult
	for _, n := range o.Counts {
		var bs, ps []time.Duration
		for r := 0; r < o.Rounds; r++ {
			b, err := timeBerth(ctx, c, o.Image, n, r)
			if err != nil {
				return results, fmt.Errorf("berth, %d instances: %w", n, err)
			}
			p, err := timePlain(ctx, dc, o.Image, n, runID)
			if err != nil {
				return results, fmt.Errorf("plain loop, %d instances: %w", n, err)
			}
			bs, ps = append(bs, b), append(ps, p)
		}
		res := DeployResult{Instances: n, Berth: median(bs), Plain: median(ps)}
		results = append(results, res)
		if o.Out != nil {
			fmt.Fprintf(o.Out, "  %d instances: berth %s, plain loop %s\n", n, res.Berth.Round(time.Millisecond), res.Plain.Round(time.Millisecond))
		}
	}
	return results, nil
}

// PrintDeployTable writes the results as a Markdown table.
func PrintDeployTable(w io.Writer, rs []DeployResult) {
	fmt.Fprintln(w, "| instances | berth apply → all running | plain Docker API loop | ratio |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %d | %s | %s | %.2f× |\n", r.Instances, r.Berth.Round(time.Millisecond),
			r.Plain.Round(time.Millisecond), float64(r.Berth)/float64(r.Plain))
	}
}

func startDaemon(ctx context.Context, dir, runID string) (*client.Client, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan *client.Client, 1)
	done := make(chan error, 1)
	go func() {
		done <- daemon.RunUp(ctx, daemon.Options{DataDir: filepath.Join(dir, "data"), Listen: addr,
			NodeName: "berth-bench-" + runID, WorkloadLabels: map[string]string{benchLabel: runID},
			Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready: func(url, token string) { ready <- client.New(url, token) }})
	}()
	select {
	case c := <-ready:
		return c, func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("start berth: %w", err)
	}
}

const benchCmd = `["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]`

func timeBerth(ctx context.Context, c *client.Client, image string, n, round int) (time.Duration, error) {
	name := fmt.Sprintf("bench%d-%d", n, round)
	spec := fmt.Sprintf("name: %s\nimage: %s\ncommand: %s\ninstances: %d\nresources: {memory: 64Mi}\nports: [{name: http, containerPort: 8080}]\nstopGracePeriod: 1s\n",
		name, image, benchCmd, n)
	start := time.Now()
	if _, err := c.Apply(ctx, "", []byte(spec)); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var why string
	_, err := c.WaitConverged(wctx, "", name, client.WaitOptions{Poll: 10 * time.Millisecond,
		Progress: func(v model.AppView) {
			if strings.HasPrefix(v.Status.Message, "unschedulable") {
				why = v.Status.Message
				cancel() // will never converge on this host
			}
		}})
	if why != "" {
		return 0, fmt.Errorf("%s (use fewer instances)", why)
	}
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	if err := c.DeleteApp(ctx, "", name); err != nil {
		return d, err
	}
	_, err = c.WaitConverged(ctx, "", name, client.WaitOptions{Gone: true})
	return d, err
}

// timePlain creates and starts n containers like berth's one by one, then
// waits until all run.
func timePlain(ctx context.Context, dc *dockerclient.Client, image string, n int, runID string) (time.Duration, error) {
	labels := map[string]string{benchLabel: runID, "berth.test": "1"}
	start := time.Now()
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		cfg := &container.Config{Image: image, Labels: labels,
			Cmd:          []string{"sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"},
			ExposedPorts: nat.PortSet{"8080/tcp": {}}}
		hc := &container.HostConfig{
			Resources:    container.Resources{Memory: 64 << 20},
			PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "0"}}}}
		created, err := dc.ContainerCreate(ctx, cfg, hc, nil, nil, "")
		if err != nil {
			return 0, err
		}
		ids = append(ids, created.ID)
		if err := dc.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			return 0, err
		}
	}
	for _, id := range ids {
		for {
			st, err := dc.ContainerInspect(ctx, id)
			if err != nil {
				return 0, err
			}
			if st.State.Running {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	d := time.Since(start)
	for _, id := range ids {
		_ = dc.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	}
	return d, nil
}

func removeLabelled(dc *dockerclient.Client, label string) {
	ctx := context.Background()
	list, err := dc.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ParseCounts parses "1,10,50".
func ParseCounts(s []string) ([]int, error) {
	var out []int
	for _, v := range s {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("invalid count %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}
