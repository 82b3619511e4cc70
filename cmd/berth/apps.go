package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/model"
)

func newApps(g *globals) *cobra.Command {
	var out string
	var all bool
	cmd := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"ls"},
		Short:   "List apps with their instance counts and revision",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.ListApps(cmd.Context(), g.namespace, all)
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, list); ok {
				return err
			}
			t := newTable("NAME", "NAMESPACE", "READY", "STATUS", "REVISION", "IMAGE", "AGE")
			for _, a := range list {
				t.row(a.Name, a.Namespace, fmt.Sprintf("%d/%d", a.Status.Ready, a.Status.Desired),
					appState(a), fmt.Sprintf("rev %d", a.Revision), a.Spec.Image, age(a.CreatedAt))
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list apps of every namespace")
	return cmd
}

// appState is a one-word summary for tables.
func appState(a model.AppView) string {
	s := a.Status
	switch {
	case a.Deleting:
		return "deleting"
	case s.Converged && s.Desired == 0:
		return "stopped"
	case s.Converged:
		return "running"
	case s.Outdated > 0:
		return "rolling-out"
	case s.Failed > 0:
		return "failing"
	case s.Pending > 0 && strings.HasPrefix(s.Message, "unschedulable"):
		return "unschedulable"
	}
	return "progressing"
}

func newGet(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get APP",
		Short: "Show an app's spec and status",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.GetApp(cmd.Context(), g.namespace, args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = "yaml"
			}
			_, err = printStructured(os.Stdout, out, v)
			return err
		},
	}
	outputFlag(cmd, &out, "yaml (default), json")
	return cmd
}

func newPs(g *globals) *cobra.Command {
	var out string
	var all bool
	cmd := &cobra.Command{
		Use:   "ps APP",
		Short: "List an app's instances: node, address, state, health, host ports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			insts, err := c.Instances(cmd.Context(), g.namespace, args[0])
			if err != nil {
				return err
			}
			if !all {
				kept := insts[:0]
				for _, in := range insts {
					if in.Active() || !in.Terminal() {
						kept = append(kept, in)
					}
				}
				insts = kept
			}
			if ok, err := printStructured(os.Stdout, out, insts); ok {
				return err
			}
			t := newTable("INSTANCE", "REV", "NODE", "IP", "STATE", "HEALTH", "PORTS", "RESTARTS", "AGE", "MESSAGE")
			for _, in := range insts {
				state := in.Status.State
				if !in.Active() && !in.Terminal() {
					state += " (stopping)"
				}
				msg := in.Status.Message
				if in.Node == "" && in.PlacementMessage != "" {
					msg = in.PlacementMessage
				}
				if in.Status.NextRestartAt != nil {
					msg += fmt.Sprintf(" (restart in %s)", time.Until(*in.Status.NextRestartAt).Round(time.Second))
				}
				ip := ""
				if in.Status.IP.IsValid() {
					ip = in.Status.IP.String()
				}
				t.row(in.ID, in.Revision, dash(in.Node), dash(ip), state, dash(in.Status.Health), dash(model.FormatHostPorts(in.HostPorts)),
					in.Status.Restarts, age(in.CreatedAt), dash(msg))
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include stopped instances")
	return cmd
}

func newScale(g *globals) *cobra.Command {
	var wait bool
	var out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "scale APP N",
		Short:   "Set an app's instance count (no new revision)",
		Example: "  berth scale hello 5 --wait",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return fmt.Errorf("instance count must be a number >= 0, got %q", args[1])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := waitContext(cmd.Context(), wait, timeout)
			defer cancel()
			app, err := c.Scale(ctx, g.namespace, args[0], n)
			if err != nil {
				return err
			}
			rep := reporter{format: out}
			rep.say("app %s scaled to %d instances", args[0], n)
			if !wait {
				return rep.result(app)
			}
			v, err := waitApp(ctx, c, rep, g.namespace, args[0], false)
			if err != nil {
				return err
			}
			return rep.result(v)
		},
	}
	addWaitFlags(cmd, &wait, &timeout)
	outputFlag(cmd, &out, "json, yaml (the app; messages go to stderr)")
	return cmd
}

func newRm(g *globals) *cobra.Command {
	var wait bool
	var out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "rm APP",
		Aliases: []string{"delete"},
		Short:   "Stop an app's instances and remove it",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := waitContext(cmd.Context(), wait, timeout)
			defer cancel()
			if err := c.DeleteApp(ctx, g.namespace, args[0]); err != nil {
				return err
			}
			rep := reporter{format: out}
			rep.say("app %s is being removed", args[0])
			if wait {
				if _, err := waitApp(ctx, c, rep, g.namespace, args[0], true); err != nil {
					return err
				}
			}
			return rep.result(map[string]any{"name": args[0], "namespace": g.namespace, "removed": wait})
		},
	}
	addWaitFlags(cmd, &wait, &timeout)
	outputFlag(cmd, &out, "json, yaml (messages go to stderr)")
	return cmd
}
