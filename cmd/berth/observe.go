package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

func newLogs(g *globals) *cobra.Command {
	var o client.LogOptions
	cmd := &cobra.Command{
		Use:   "logs APP",
		Short: "Print an app's logs (all instances, or one with --instance)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rc, err := c.Logs(cmd.Context(), g.namespace, args[0], o)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(os.Stdout, rc)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep streaming new lines")
	cmd.Flags().StringVar(&o.Instance, "instance", "", "only this instance")
	cmd.Flags().IntVar(&o.Tail, "tail", 0, "only the last N lines of each instance (0: all)")
	return cmd
}

func newEvents(g *globals) *cobra.Command {
	var f client.EventFilter
	var follow bool
	var out string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show what berth did and why (scheduling, starts, exits, health)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			f.Namespace = g.namespace
			if follow {
				first := true
				return c.FollowEvents(cmd.Context(), f, func(e model.Event) error {
					if out != "" {
						_, err := printStructured(os.Stdout, out, e)
						return err
					}
					if first {
						fmt.Println(eventHeader)
						first = false
					}
					fmt.Println(eventLine(e))
					return nil
				})
			}
			list, err := c.Events(cmd.Context(), f)
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, list); ok {
				return err
			}
			fmt.Println(eventHeader)
			for _, e := range list {
				fmt.Println(eventLine(e))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream new events")
	cmd.Flags().StringVar(&f.App, "app", "", "only events of this app")
	cmd.Flags().StringVar(&f.Instance, "instance", "", "only events of this instance")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "only the last N events")
	cmd.Flags().BoolVarP(&f.All, "all-namespaces", "A", false, "events of every namespace")
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

const eventHeader = "TIME                 TYPE     REASON            OBJECT                   MESSAGE"

func eventLine(e model.Event) string {
	obj := e.App
	if e.Instance != "" {
		obj = e.Instance
	}
	if obj == "" && e.Node != "" {
		obj = "node/" + e.Node
	}
	return fmt.Sprintf("%-20s %-8s %-17s %-24s %s", e.Time.Local().Format("2006-01-02 15:04:05"),
		e.Type, e.Reason, obj, strings.TrimSpace(e.Message))
}

func newNodes(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List nodes with their capacity and drivers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, nodes); ok {
				return err
			}
			t := newTable("NAME", "STATUS", "CPU", "MEMORY", "DRIVERS", "HEARTBEAT", "VERSION")
			for _, n := range nodes {
				status := n.Status
				if n.Cordoned {
					status += ",cordoned"
				}
				if n.Draining {
					status += ",draining"
				}
				t.row(n.Name, status, n.Capacity.CPU.String(), n.Capacity.Memory.Human(),
					strings.Join(n.Drivers, ","), age(n.LastHeartbeat)+" ago", dash(n.Version))
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's and, if reachable, the server's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Println("client:", version)
			c, err := g.client()
			if err != nil {
				return nil
			}
			v, err := c.Version(cmd.Context())
			if err != nil {
				fmt.Println("server: unreachable:", err)
				return nil
			}
			fmt.Println("server:", v.Version, "store:", v.Store)
			return nil
		},
	}
}
