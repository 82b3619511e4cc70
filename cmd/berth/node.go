package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newToken(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens for agents (admin)"}
	var ttl, desc, out string
	create := &cobra.Command{
		Use:   "create",
		Short: "Make a join token; it is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), ttl, desc)
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, t); ok {
				return err
			}
			fmt.Println(t.Token)
			return nil
		},
	}
	create.Flags().StringVar(&ttl, "ttl", "1h", "how long the token can be used to join (0: no expiry)")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	outputFlag(create, &out, "json, yaml")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List join tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			t := newTable("ID", "STATE", "EXPIRES", "USES", "DESCRIPTION")
			for _, tk := range list {
				state, exp := "valid", "never"
				if !tk.ExpiresAt.IsZero() {
					exp = tk.ExpiresAt.Local().Format(time.RFC3339)
					if time.Now().After(tk.ExpiresAt) {
						state = "expired"
					}
				}
				if tk.Revoked {
					state = "revoked"
				}
				t.row(tk.ID, state, exp, tk.Uses, dash(tk.Description))
			}
			t.flush()
			return nil
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token (agents already joined keep their certificates)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Println("revoked", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

func newNode(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect and manage nodes: ls, show, cordon, uncordon, label, drain, rm"}
	ls := newNodes(g)
	ls.Use, ls.Aliases = "ls", []string{"list"}
	var out string
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.Node(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = "yaml"
			}
			_, err = printStructured(os.Stdout, out, n)
			return err
		},
	}
	outputFlag(show, &out, "json, yaml (default)")
	action := func(use, short, verb string) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				if _, err := c.NodeAction(cmd.Context(), args[0], use); err != nil {
					return err
				}
				fmt.Println(args[0], verb)
				return nil
			},
		}
	}
	label := &cobra.Command{
		Use:   "label NAME KEY=VALUE... [KEY-]...",
		Short: "Set node labels (KEY- removes one)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels := map[string]string{}
			for _, a := range args[1:] {
				if k, ok := strings.CutSuffix(a, "-"); ok && !strings.Contains(a, "=") {
					labels[k] = ""
					continue
				}
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" || v == "" {
					return fmt.Errorf("label %q: use KEY=VALUE to set, KEY- to remove", a)
				}
				labels[k] = v
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.LabelNode(cmd.Context(), args[0], labels)
			if err != nil {
				return err
			}
			keys := make([]string, 0, len(n.Labels))
			for k, v := range n.Labels {
				keys = append(keys, k+"="+v)
			}
			sort.Strings(keys)
			fmt.Println(n.Name, "labels:", strings.Join(keys, " "))
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a node and revoke its agent's certificate; its instances are replaced elsewhere",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RemoveNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Println("removed", args[0])
			return nil
		},
	}
	cmd.AddCommand(ls, show, action("cordon", "Place no new instances on the node", "cordoned"),
		action("uncordon", "Let the scheduler use the node again (ends a drain)", "uncordoned"),
		action("drain", "Cordon the node and move its instances elsewhere one at a time", "is draining (berth node show to follow)"),
		label, rm)
	return cmd
}
