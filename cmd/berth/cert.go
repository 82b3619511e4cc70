package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newCert(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Manage the TLS certificates the router serves",
		Long: `The router terminates TLS with certificates kept in the store. It picks one
by the client's server name (SNI): a route's pinned tls.secretName first,
then a certificate naming the host exactly, then a wildcard one.`,
	}
	cmd.AddCommand(newCertAdd(g), newCertLs(g), newCertRm(g))
	return cmd
}

func newCertAdd(g *globals) *cobra.Command {
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:     "add NAME --cert FILE --key FILE",
		Short:   "Store (or replace) a certificate and its key",
		Example: "  berth cert add example --cert example.crt --key example.key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if certFile == "" || keyFile == "" {
				return fmt.Errorf("pass both --cert and --key (PEM files)")
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			got, err := c.PutCert(cmd.Context(), args[0], string(certPEM), string(keyPEM))
			if err != nil {
				return err
			}
			fmt.Printf("certificate %s stored for %s (expires %s)\n", got.Name, strings.Join(got.DNSNames, ", "), got.NotAfter.Format("2006-01-02"))
			return nil
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain, leaf first")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key")
	return cmd
}

func newCertLs(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List stored certificates (without keys)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.Certs(cmd.Context())
			if err != nil {
				return err
			}
			if ok, err := printStructured(os.Stdout, out, list); ok {
				return err
			}
			t := newTable("NAME", "NAMES", "EXPIRES")
			for _, cert := range list {
				t.row(cert.Name, strings.Join(cert.DNSNames, ","), cert.NotAfter.Format("2006-01-02"))
			}
			t.flush()
			return nil
		},
	}
	outputFlag(cmd, &out, "json|yaml")
	return cmd
}

func newCertRm(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a stored certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteCert(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("certificate %s removed\n", args[0])
			return nil
		},
	}
}
