package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only when benchPprofEnv is set
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/bench"
	"github.com/berth-dev/berth/internal/model"
)

// benchPprofEnv, set by 'berth bench cluster --pprof', makes the server
// child serve net/http/pprof on that (loopback) address.
const benchPprofEnv = bench.PprofEnv

func init() {
	if addr := os.Getenv(benchPprofEnv); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}

func newBench() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure berth against the runtime it drives (prints a table)",
	}
	var counts []string
	var rounds int
	var image string
	deploy := &cobra.Command{
		Use:   "deploy",
		Short: "Time apply → all instances running, against a plain Docker API loop",
		Long: `Starts a private berth (temporary data dir, loopback port) and, for each
instance count, times 'apply' until every instance runs, then times the
same containers created and started one by one over the Docker API. The
median of --rounds runs is printed. Everything created is removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := bench.ParseCounts(counts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop() // Ctrl-C still removes what the benchmark created
			fmt.Fprintf(os.Stderr, "benchmarking deploys of %v instances, %d rounds each\n", ns, rounds)
			rs, err := bench.RunDeploy(ctx, bench.DeployOptions{Counts: ns, Rounds: rounds, Image: image, Out: os.Stderr})
			if len(rs) > 0 {
				bench.PrintDeployTable(os.Stdout, rs)
			}
			return err
		},
	}
	deploy.Flags().StringSliceVar(&counts, "counts", []string{"1", "10", "50"}, "instance counts to measure")
	deploy.Flags().IntVar(&rounds, "rounds", 3, "rounds per count (median reported)")
	deploy.Flags().StringVar(&image, "image", "berth-test/busybox:latest", "image to run (must exist locally)")
	cmd.AddCommand(deploy, newBenchStart(), newBenchPull(), newBenchCluster(), newBenchRouter())
	return cmd
}

// benchContext stops on Ctrl-C so the benchmark still removes what it made.
func benchContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func newBenchStart() *cobra.Command {
	var o bench.StartOptions
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Time container start under each OCI runtime: berth's driver oci against the runtime run by hand",
		Long: `Pushes a busybox image to a docker-registry started on 127.0.0.1, pulls it
into a temporary image store (untimed), then for each runtime times driver
oci's Start until the container runs (overlay rootfs, bundle, shim, runtime)
and '<runtime> run --detach' of the same bundle. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := benchContext(cmd)
			defer stop()
			o.Out = os.Stderr
			rs, err := bench.RunStart(ctx, o)
			if len(rs) > 0 {
				bench.PrintStartTable(os.Stdout, rs)
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&o.Runtimes, "runtimes", nil, "runtimes to measure (default: every one installed)")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 5, "rounds per runtime (median reported)")
	return cmd
}

func newBenchPull() *cobra.Command {
	var o bench.PullOptions
	var size string
	cmd := &cobra.Command{
		Use:   "pull",
		Short: "Time pulling a large multi-layer image: berth's image store against skopeo copy",
		Long: `Pushes an image of random data to a docker-registry started on 127.0.0.1
(untimed), then times berth pulling it into an empty image store (download,
digest check, unpack, fsync) and 'skopeo copy' to an OCI layout directory.
Needs root, docker-registry and skopeo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := model.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			o.Size, o.Out = int64(n), os.Stderr
			ctx, stop := benchContext(cmd)
			defer stop()
			r, err := bench.RunPull(ctx, o)
			if err != nil {
				return err
			}
			bench.PrintPullTable(os.Stdout, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&size, "size", "100M", "image size")
	cmd.Flags().IntVar(&o.Layers, "layers", 4, "layers")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 3, "rounds (median reported)")
	return cmd
}

func newBenchCluster() *cobra.Command {
	o := bench.ClusterOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "A real berth server with simulated agents (mock driver, real protocol): placements/s, submit→running, server RSS, store size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = os.Stderr
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := bench.RunCluster(ctx, o)
			if err != nil {
				return err
			}
			bench.PrintClusterTable(os.Stdout, r)
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Nodes, "nodes", 1000, "simulated agents")
	cmd.Flags().IntVar(&o.Instances, "instances", 10000, "instances to place and run")
	cmd.Flags().IntVar(&o.PerApp, "per-app", 100, "instances per app")
	cmd.Flags().IntVar(&o.ApplyClients, "apply-clients", 8, "clients applying the apps at once (as many as apps: all submitted at once)")
	cmd.Flags().StringVar(&o.Pprof, "pprof", "", "serve the server's net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
	cmd.Flags().DurationVar(&o.Settle, "settle", 0, "let the joined fleet idle this long before applying, and report the server's idle CPU")
	cmd.Flags().StringVar(&o.ServerMemoryLimit, "server-memory-limit", "", "the server's --memory-limit (Go's soft memory limit, e.g. 215MiB)")
	cmd.Flags().IntVar(&o.AgentsNice, "agents-nice", 10, "nice value of the simulated agents' process: real agents run on other hosts, so the server comes first (0: equal priority)")
	cmd.Flags().StringVar(&o.AgentsPprof, "pprof-agents", "", "serve the simulated agents' process's net/http/pprof on this loopback address")
	cmd.AddCommand(newBenchClusterAgents())
	return cmd
}

// newBenchClusterAgents is the child process of 'bench cluster' that runs
// the simulated agents.
func newBenchClusterAgents() *cobra.Command {
	var o bench.SimAgentsOptions
	cmd := &cobra.Command{
		Use:    "agents",
		Short:  "Run simulated agents (mock driver) against a server until interrupted; started by 'bench cluster'",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Server == "" || o.JoinToken == "" || o.Dir == "" {
				return fmt.Errorf("--server, --join-token and --dir are required")
			}
			o.Out = os.Stderr
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			bench.RunSimulatedAgents(ctx, o)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Server, "server", "", "server URL")
	cmd.Flags().StringVar(&o.JoinToken, "join-token", "", "join token")
	cmd.Flags().IntVar(&o.Nodes, "nodes", 1000, "simulated agents")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory for the agents' data dirs")
	return cmd
}

func newBenchRouter() *cobra.Command {
	var o bench.RouterOptions
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Load the edge router with wrk, side by side with nginx as a reverse proxy to the same instances",
		Long: `Starts a private 'berth up' (temporary data dir, loopback ports, docker
driver) with its router on a free loopback port, applies an app of
--instances busybox httpd behind the route bench.test, and runs Debian's
nginx as a reverse proxy to the same instances' host ports (upstream
keepalive, HTTP/1.1). Both get the same CPU budget: --procs is berth's
GOMAXPROCS and nginx's worker_processes. wrk loads each for --duration
(the order alternates over --rounds); the medians of req/s, p50 and p99,
each proxy's CPU time per request and its RSS are printed as a Markdown
table. Everything started is stopped and removed, also on Ctrl-C. Needs nginx and wrk
(scripts/bench-deps.sh) and the image from scripts/test-image.sh.`,
		Example: "  berth bench router\n  berth bench router --duration 5s --connections 64 --rounds 2",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := benchContext(cmd)
			defer stop()
			o.Out = os.Stderr
			fmt.Fprintf(os.Stderr, "benchmarking the router: wrk -t%d -c%d -d%s, %d instances, %d rounds\n",
				o.Threads, o.Connections, o.Duration, o.Instances, o.Rounds)
			rs, err := bench.RunRouter(ctx, o)
			if len(rs) > 0 {
				bench.PrintRouterTable(os.Stdout, rs)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each wrk run")
	f.IntVar(&o.Connections, "connections", 32, "wrk connections (-c)")
	f.IntVar(&o.Threads, "threads", 2, "wrk threads (-t)")
	f.IntVar(&o.Instances, "instances", 4, "busybox httpd instances behind both proxies")
	f.IntVar(&o.Rounds, "rounds", 3, "rounds; the proxies' order alternates, medians are reported")
	f.IntVar(&o.Procs, "procs", 0, "CPUs per proxy: berth's GOMAXPROCS and nginx's worker_processes (0: this host's GOMAXPROCS)")
	f.BoolVar(&o.Direct, "direct", true, "also run wrk straight to one instance's host port (no proxy)")
	f.StringVar(&o.Image, "image", "berth-test/busybox:latest", "image of the instances (must exist locally)")
	return cmd
}
