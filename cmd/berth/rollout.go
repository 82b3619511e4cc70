package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

func newRollout(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow and steer an app's rollout: status, history, undo, pause, resume, promote, abort",
	}
	cmd.AddCommand(newRolloutStatus(g), newRolloutHistory(g), newRolloutUndo(g),
		newRolloutAction(g, model.ActionPause, "Pause the app's rollout where it is"),
		newRolloutAction(g, model.ActionResume, "Resume a paused rollout"),
		newRolloutAction(g, model.ActionPromote, "Promote: end a canary pause (--full: skip every remaining step) or switch blue/green now"),
		newRolloutAction(g, model.ActionAbort, "Abort the rollout: all traffic back to the stable revision, new instances removed"))
	return cmd
}

func newRolloutStatus(g *globals) *cobra.Command {
	var out string
	var watch bool
	cmd := &cobra.Command{
		Use:   "status APP",
		Short: "Show the app's rollout: strategy, step, counts, traffic split and why it waits or failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if !watch {
				v, err := c.Rollout(cmd.Context(), g.namespace, args[0])
				if err != nil {
					return err
				}
				if ok, err := printStructured(os.Stdout, out, v); ok {
					return err
				}
				printRollout(os.Stdout, v)
				return nil
			}
			return watchRollout(cmd.Context(), c, g.namespace, args[0])
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "print every change until the rollout ends")
	return cmd
}

// watchRollout prints the rollout each time it changes, until it ends.
func watchRollout(ctx context.Context, c *client.Client, ns, name string) error {
	last := ""
	for {
		v, err := c.Rollout(ctx, ns, name)
		if err != nil {
			return err
		}
		var b strings.Builder
		printRollout(&b, v)
		if s := b.String(); s != last {
			fmt.Printf("--- %s\n%s", time.Now().Format("15:04:05"), s)
			last = s
		}
		done, err := rolloutOver(ctx, c, ns, name, v)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// rolloutOver reports whether there is nothing more to watch: the
// rollout of the app's current revision (or back to it) has ended, or
// there is none and the app has converged (a change the controller has
// not picked up yet is not over).
func rolloutOver(ctx context.Context, c *client.Client, ns, name string, v model.RolloutView) (bool, error) {
	if v.Pending != nil {
		return false, nil
	}
	ro := v.Rollout
	covers := ro != nil && (ro.To == v.Revision && ro.RevertTo == 0 || ro.RevertTo == v.Revision)
	if covers {
		if ro.State == model.RolloutFailed {
			return true, fmt.Errorf("rollout of %s failed: %s", name, ro.Reason)
		}
		return ro.Done() && ro.Traffic == nil, nil
	}
	app, err := c.GetApp(ctx, ns, name)
	if err != nil {
		return false, err
	}
	return app.Status.Converged, nil
}

func printRollout(w io.Writer, v model.RolloutView) {
	ro := v.Rollout
	if ro == nil {
		fmt.Fprintf(w, "revision %d; no rollout yet\n", v.Revision)
		return
	}
	fmt.Fprintf(w, "strategy:  %s, revision %d -> %d (app now at revision %d)\n", ro.Strategy, ro.From, ro.To, v.Revision)
	state := ro.State
	if ro.RevertTo != 0 {
		state += fmt.Sprintf(" (back to revision %d)", ro.RevertTo)
	}
	fmt.Fprintf(w, "state:     %s\n", state)
	if ro.Strategy == model.RolloutCanary && ro.StepCount > 0 {
		step := min(ro.Step+1, ro.StepCount)
		fmt.Fprintf(w, "step:      %d/%d, canary weight %d%%\n", step, ro.StepCount, ro.Weight)
	}
	c := ro.Counts
	fmt.Fprintf(w, "instances: desired %d, new %d (%d ready), old %d (%d ready)\n", c.Desired, c.New, c.NewReady, c.Old, c.OldReady)
	fmt.Fprintf(w, "traffic:   %s\n", describeSplit(ro))
	if ro.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", ro.Reason)
	}
	if ro.Message != "" {
		fmt.Fprintf(w, "waiting:   %s\n", ro.Message)
	}
	fmt.Fprintf(w, "started:   %s ago, updated %s ago\n", age(ro.StartedAt), age(ro.UpdatedAt))
	if p := v.Pending; p != nil {
		fmt.Fprintf(w, "pending:   %s requested %s ago\n", p.Action, age(p.At))
	}
}

// describeSplit says where the rollout sends traffic.
func describeSplit(ro *model.Rollout) string {
	t := ro.Traffic
	if t == nil {
		return "as the routes say (every ready instance, or the routes' traffic section)"
	}
	parts := []string{fmt.Sprintf("stable revision %d", t.Stable)}
	if t.Canary != 0 {
		w := 0
		for _, x := range t.Weights {
			w += x.Weight
		}
		parts = append(parts, fmt.Sprintf("canary revision %d gets %d%%", t.Canary, w))
		if len(t.Rules) > 0 {
			parts = append(parts, fmt.Sprintf("plus requests matching %d rule(s)", len(t.Rules)))
		}
	} else {
		parts[0] = fmt.Sprintf("all to revision %d", t.Stable)
	}
	return strings.Join(parts, ", ")
}

func newRolloutHistory(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "history APP",
		Short: "List the app's revisions, marking the one it runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			revs, err := c.Revisions(cmd.Context(), g.namespace, args[0])
			if err != nil {
				return err
			}
			v, err := c.Rollout(cmd.Context(), g.namespace, args[0])
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, revs); ok {
				return err
			}
			t := newTable("REVISION", "CURRENT", "IMAGE", "HASH", "AGE")
			for _, r := range revs {
				cur := ""
				if r.Number == v.Revision {
					cur = "*"
				}
				t.row(r.Number, cur, r.Spec.Image, r.Hash, age(r.CreatedAt))
			}
			t.flush()
			if ro := v.Rollout; ro != nil {
				fmt.Printf("last rollout: %s %d -> %d, %s %s\n", ro.Strategy, ro.From, ro.To, ro.State, ro.Reason)
			}
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

func newRolloutUndo(g *globals) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo APP",
		Short: "Go back to the previous revision (or --to N); during a blue/green grace it switches back at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.RolloutAction(cmd.Context(), g.namespace, args[0], model.ActionUndo, client.RolloutOptions{ToRevision: to})
			if err != nil {
				return err
			}
			fmt.Printf("undo of %s requested: back to revision %d\n", args[0], v.Pending.ToRevision)
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to", 0, "revision to go back to (default: the previous one)")
	return cmd
}

func newRolloutAction(g *globals, action, short string) *cobra.Command {
	var full bool
	cmd := &cobra.Command{
		Use:   action + " APP",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.RolloutAction(cmd.Context(), g.namespace, args[0], action, client.RolloutOptions{Full: full}); err != nil {
				return err
			}
			fmt.Printf("%s of %s's rollout requested\n", action, args[0])
			return nil
		},
	}
	if action == model.ActionPromote {
		cmd.Flags().BoolVar(&full, "full", false, "skip every remaining canary step")
	}
	return cmd
}
