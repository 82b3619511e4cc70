package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/bench"
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
	cmd.AddCommand(deploy)
	return cmd
}
