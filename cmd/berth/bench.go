package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/bench"
	"github.com/berth-dev/berth/internal/model"
)

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
	cmd.AddCommand(deploy, newBenchStart(), newBenchPull(), newBenchCluster())
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
			r, err := bench.RunCluster(cmd.Context(), o)
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
	return cmd
}
