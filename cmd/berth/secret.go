package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newSecret(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Manage secrets (stored encrypted; values are never shown again)",
		Long: `Secrets hold values apps need but specs should not: registry credentials
today (imagePullSecret: NAME, with keys username and password, or
.dockerconfigjson). The server seals values with a key in its data dir
(secrets.key) before they reach the store; the API lists names and keys only.`,
	}
	cmd.AddCommand(newSecretSet(g), newSecretLs(g), newSecretRm(g))
	return cmd
}

func newSecretSet(g *globals) *cobra.Command {
	var literals, files []string
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Create or replace a secret",
		Example: `  berth secret set regcred --from-literal username=ci --from-literal password="$REG_PASSWORD"
  berth secret set regcred --from-file .dockerconfigjson=$HOME/.docker/config.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data := map[string]string{}
			for _, kv := range literals {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--from-literal %q: want KEY=VALUE", kv)
				}
				data[k] = v
			}
			for _, kf := range files {
				k, path, ok := strings.Cut(kf, "=")
				if !ok {
					return fmt.Errorf("--from-file %q: want KEY=PATH", kf)
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				data[k] = string(b)
			}
			if len(data) == 0 {
				return fmt.Errorf("no values: use --from-literal KEY=VALUE or --from-file KEY=PATH")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.PutSecret(cmd.Context(), g.namespace, args[0], data)
			if err != nil {
				return err
			}
			fmt.Printf("secret %s set (keys: %s)\n", info.Name, strings.Join(info.Keys, ", "))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&literals, "from-literal", nil, "KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&files, "from-file", nil, "KEY=PATH: the file's content as the value (repeatable)")
	return cmd
}

func newSecretLs(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List secrets: names and keys, never values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Secrets(cmd.Context(), g.namespace)
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, list); ok {
				return err
			}
			t := newTable("NAME", "KEYS", "UPDATED")
			for _, s := range list {
				t.row(s.Name, strings.Join(s.Keys, ","), age(s.UpdatedAt)+" ago")
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json, yaml")
	return cmd
}

func newSecretRm(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), g.namespace, args[0]); err != nil {
				return err
			}
			fmt.Println("secret", args[0], "removed")
			return nil
		},
	}
}
