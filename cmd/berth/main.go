// Command berth is the single binary of the berth PaaS: server, agent and
// CLI. Commands only parse flags and call internal packages.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/cliconfig"
	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/driver/shim"
	"github.com/berth-dev/berth/internal/model"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every command shares.
type globals struct {
	server    string
	token     string
	namespace string
	root      *cobra.Command
}

// explicitNamespace is -n when the user gave it, else "" (a spec's own
// namespace, or the default, applies).
func (g *globals) explicitNamespace() string {
	if g.root.PersistentFlags().Changed("namespace") {
		return g.namespace
	}
	return ""
}

func main() {
	shim.MaybeRun() // a workload's shim is this binary re-executed
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "berth",
		Short: "berth runs container apps: place, start, health-check, route, roll out",
		Long: `berth is a container-native PaaS in one binary.

Start it on a host with 'berth up', then hand it apps:
  berth apply -f examples/hello.yaml --wait
  berth apps
  berth ps hello

The CLI finds the server through the context 'berth up' writes
(~/.berth/context.json); --server/--token or BERTH_SERVER/BERTH_TOKEN override it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.root = root
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", "", "berth API URL (env BERTH_SERVER; default from the CLI context)")
	pf.StringVar(&g.token, "token", "", "API token (env BERTH_TOKEN; default from the CLI context)")
	pf.StringVarP(&g.namespace, "namespace", "n", model.DefaultNamespace, "namespace of the apps to act on")
	root.AddCommand(newUp(), newApply(g), newRollout(g), newApps(g), newGet(g), newPs(g), newEndpoints(g), newLogs(g), newScale(g),
		newRm(g), newNodes(g), newEvents(g), newVersion(g), newImage(g), newBench(), newCert(g), newRouter(),
		newServer(), newAgent(), newToken(g), newNode(g), newSecret(g))
	return root
}

// client builds an API client from flags, environment and context, in
// that order of precedence.
func (g *globals) client() (*client.Client, error) {
	ctx, err := cliconfig.Load()
	if err != nil {
		return nil, err
	}
	server := first(g.server, os.Getenv("BERTH_SERVER"), ctx.Server)
	token := first(g.token, os.Getenv("BERTH_TOKEN"), ctx.Token)
	if server == "" {
		return nil, fmt.Errorf("no berth server known: start one with 'berth up', or pass --server / set BERTH_SERVER")
	}
	ca := ctx.CA
	if f := os.Getenv("BERTH_CA_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("BERTH_CA_FILE: %w", err)
		}
		ca = string(b)
	}
	if strings.HasPrefix(server, "https://") && ca != "" {
		return client.NewTLS(server, token, []byte(ca))
	}
	return client.New(server, token), nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
