package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

func newApply(g *globals) *cobra.Command {
	var file, out string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update apps from a YAML or JSON spec ('-' reads stdin)",
		Long: `Create or update apps from a spec file. A file may hold several specs
separated by '---' lines. Re-applying an identical spec changes nothing; a
change of 'instances' alone scales without a new revision; any other change
makes a new revision that replaces the instances one at a time.`,
		Example: "  berth apply -f examples/hello.yaml --wait",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("missing -f FILE (a YAML or JSON app spec, or - for stdin)")
			}
			data, err := readSpecFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := waitContext(cmd.Context(), wait, timeout)
			defer cancel()
			rep := reporter{format: out}
			var results []model.ApplyResult
			for _, doc := range splitDocuments(data) {
				res, err := c.Apply(ctx, g.explicitNamespace(), doc)
				if err != nil {
					return applyError(file, err)
				}
				results = append(results, res)
				a := res.App
				switch {
				case !res.Changed:
					rep.say("app %s unchanged (revision %d)", a.Name, a.Revision)
				case res.NewRevision && a.Revision == 1:
					rep.say("app %s created (revision 1, %d instances)", a.Name, a.DesiredInstances())
				case res.NewRevision:
					rep.say("app %s updated to revision %d", a.Name, a.Revision)
				default:
					rep.say("app %s scaled to %d instances (revision %d)", a.Name, a.DesiredInstances(), a.Revision)
				}
				if wait {
					if _, err := waitApp(ctx, c, rep, a.Namespace, a.Name, false); err != nil {
						return err
					}
				}
			}
			return rep.result(results)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "spec file (YAML or JSON), or - for stdin")
	outputFlag(cmd, &out, "json, yaml (the apply results; messages go to stderr)")
	addWaitFlags(cmd, &wait, &timeout)
	return cmd
}

func readSpecFile(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return b, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML file on '---' lines.
func splitDocuments(data []byte) [][]byte {
	var out [][]byte
	for _, part := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(part)) != "" {
			out = append(out, []byte(part))
		}
	}
	if len(out) == 0 {
		out = append(out, data) // let the server say what is wrong
	}
	return out
}

func stripComments(s string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// applyError lists every invalid field of a 400.
func applyError(file string, err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && len(ce.Fields) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%s is not a valid app spec:", file)
		for _, f := range ce.Fields {
			fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
		}
		return errors.New(b.String())
	}
	return err
}

func addWaitFlags(cmd *cobra.Command, wait *bool, timeout *time.Duration) {
	cmd.Flags().BoolVar(wait, "wait", false, "wait until the app has converged, showing progress")
	cmd.Flags().DurationVar(timeout, "timeout", 5*time.Minute, "how long --wait waits before failing")
}

func waitContext(ctx context.Context, wait bool, timeout time.Duration) (context.Context, context.CancelFunc) {
	if !wait {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// waitApp waits until the app converges (or is gone), printing a line on
// every change, and explains what is stuck if the wait times out.
func waitApp(ctx context.Context, c *client.Client, rep reporter, ns, name string, gone bool) (model.AppView, error) {
	v, err := c.WaitConverged(ctx, ns, name, client.WaitOptions{Gone: gone, Progress: func(v model.AppView) {
		rep.say("  %s", progressLine(v))
	}})
	if err == nil {
		if gone {
			rep.say("app %s removed", name)
		} else {
			rep.say("app %s converged: %d/%d ready at revision %d", name, v.Status.Ready, v.Status.Desired, v.Status.Revision)
		}
		return v, nil
	}
	if errors.Is(err, client.ErrFailing) {
		return v, fmt.Errorf("%s is failing: %s — see 'berth events --app %s' (--wait stops here; berth keeps retrying)",
			name, v.Status.Message, name)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		why := v.Status.Message
		if why == "" {
			why = "instances are still starting or stopping"
		}
		return v, fmt.Errorf("timed out waiting for %s: %s (%s)", name, progressLine(v), why)
	}
	return v, err
}

func progressLine(v model.AppView) string {
	s := v.Status
	parts := []string{fmt.Sprintf("%d/%d ready", s.Ready, s.Desired), fmt.Sprintf("revision %d", s.Revision)}
	counts := map[string]int{"running": s.Running, "pending": s.Pending, "failed": s.Failed,
		"stopping": s.Stopping, "outdated": s.Outdated}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	line := v.Name + ": " + strings.Join(parts, ", ")
	if s.Message != "" {
		line += " — " + s.Message
	}
	return line
}
