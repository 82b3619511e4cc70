package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newEndpoints(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "endpoints APP",
		Short: "Show what node DNS serves for an app: its name, ready addresses, SRV records",
		Long: `Show what node DNS answers for an app: <app>.<namespace>.berth resolves to
the addresses of its ready instances (running, and healthy when it has a
health check), <instance>.<app>.<namespace>.berth to one instance's, and
_<port>._<proto>.<app>.<namespace>.berth to SRV records with each ready
instance's port. Instances without an address of their own (host network)
are served with their node's address and host ports.`,
		Example: "  berth endpoints web\n  berth endpoints web -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ep, err := c.Endpoints(cmd.Context(), g.namespace, args[0])
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, ep); ok {
				return err
			}
			fmt.Printf("NAME %s  (%d ready, %d not ready)\n\n", ep.Name, len(ep.Addresses), ep.NotReady)
			t := newTable("INSTANCE", "NODE", "ADDRESS", "DNS NAME")
			for _, a := range ep.Addresses {
				ip := a.IP.String()
				if a.NodeAddress {
					ip += " (node)"
				}
				t.row(a.Instance, dash(a.Node), ip, dash(a.Name))
			}
			t.flush()
			if len(ep.SRV) > 0 {
				fmt.Println()
				t = newTable("SRV", "TARGET", "PORT")
				for _, r := range ep.SRV {
					t.row(r.Name, r.Target, r.Port)
				}
				t.flush()
			}
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}
