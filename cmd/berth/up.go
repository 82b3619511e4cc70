package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/model"
)

func newUp() *cobra.Command {
	o := daemon.Options{WriteContext: true}
	var apply []string
	var logLevel, portRange, subnet, imageMax string
	var noNative, accessLog bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run berth on this host: API, controllers and agent, on the embedded store",
		Long: `Run berth on this host: the API server, the controllers and a local agent
in one process, with the embedded store in --data-dir. It writes the CLI
context (server URL and admin token) so other berth commands on this host
work with no flags.

Stopping berth (Ctrl-C, SIGTERM, even kill -9) leaves the apps running;
starting it again reattaches to them without restarting any.`,
		Example: "  berth up\n  berth up --data-dir /tmp/berth --listen 127.0.0.1:7171 --apply examples/hello.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			err := lvl.UnmarshalText([]byte(logLevel))
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			if o.PortRange, err = parsePortRange(portRange); err != nil {
				return err
			}
			o.Native.Disabled = noNative
			o.Router.Optional = !cmd.Flags().Changed("router-listen")
			if imageMax != "" {
				n, err := model.ParseByteSize(imageMax)
				if err != nil {
					return fmt.Errorf("--image-store-max: %w", err)
				}
				o.Native.ImageStoreMax = int64(n)
			}
			if accessLog {
				o.Router.AccessLog = os.Stdout
			}
			if subnet != "" {
				if o.Native.Subnet, err = netip.ParsePrefix(subnet); err != nil || !o.Native.Subnet.Addr().Is4() {
					return fmt.Errorf("--bridge-subnet must be an IPv4 CIDR like 10.89.0.0/24, got %q", subnet)
				}
			}
			o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			o.Version = version
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if len(apply) > 0 {
				o.Ready = func(url, token string) { go applyAtStart(ctx, o.Log, client.New(url, token), apply) }
			}
			return daemon.RunUp(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", daemon.DefaultDataDir(), "where the embedded store and admin token live")
	f.StringVar(&o.Listen, "listen", daemon.DefaultListen, "API listen address")
	f.StringVar(&o.NodeName, "node-name", "", "this node's name (default: hostname)")
	f.StringSliceVar(&apply, "apply", nil, "spec files to apply once berth is up (like 'berth apply -f')")
	f.StringToStringVar(&o.WorkloadLabels, "workload-label", nil, "extra label put on every workload this node starts (key=value, repeatable)")
	f.StringVar(&portRange, "port-range", fmt.Sprintf("%d-%d", model.DefaultPortRange[0], model.DefaultPortRange[1]),
		"host ports assigned to instances come from this range (FROM-TO)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.Router.Listen, "router-listen", daemon.DefaultRouterListen, "edge router HTTP address (\"\" turns the router off; :80 to serve the network)")
	f.StringVar(&o.Router.TLSListen, "router-tls-listen", "", "edge router HTTPS address (certificates from 'berth cert add', chosen by SNI)")
	f.StringVar(&o.Router.MetricsListen, "router-metrics-listen", "", "Prometheus metrics of the router at /metrics on this address")
	f.BoolVar(&accessLog, "access-log", false, "print one line per routed request on standard output")
	f.StringToStringVar(&o.NodeLabels, "node-label", nil, "label of this node for constraints (key=value, repeatable; berth.region and berth.zone set region and zone)")
	f.BoolVar(&noNative, "no-native", false, "docker only: no image store, node network, driver oci or process")
	f.StringVar(&o.Native.Bridge, "bridge", "", "node network bridge for oci and process instances (default berth0)")
	f.StringVar(&subnet, "bridge-subnet", "", "IPv4 subnet of the node network (default: the first half of the node's subnet from --cluster-cidr)")
	clusterNetworkFlags(f, &o.Network)
	f.StringSliceVar(&o.Native.Runtimes, "runtimes", nil, "OCI runtimes to offer (runc, crun, runsc; default: every one installed)")
	f.StringVar(&o.Native.DefaultRuntime, "default-runtime", "", "OCI runtime for oci apps that name none (default runc)")
	f.StringVar(&o.Native.RegistryConfig, "registry-config", "", "docker config.json with registry credentials for image pulls")
	f.StringVar(&imageMax, "image-store-max", "", "evict least recently used unused images past this size (e.g. 20Gi); unreferenced layers are always collected")
	f.DurationVar(&o.Native.ImageGCInterval, "image-gc-interval", 10*time.Minute, "how often the image store is collected")
	nodeDNSFlags(f, &o.DNS, &o.DockerNetwork)
	f.BoolVar(&o.Isolation.Disabled, "no-isolation", false, "let traffic between app networks pass (no nftables table berth)")
	f.BoolVar(&o.DNS.NoDocker, "no-dns-docker", false, "do not serve node DNS on the docker0 gateway when there is no berth Docker network (docker containers keep the engine's default DNS)")
	f.StringSliceVar(&o.Native.InsecureRegistries, "insecure-registry", nil, "registry host[:port] spoken to over plain HTTP (loopback always is)")
	return cmd
}

// parsePortRange parses "20000-32767".
func parsePortRange(s string) ([2]int, error) {
	var r [2]int
	from, to, ok := strings.Cut(s, "-")
	var err1, err2 error
	r[0], err1 = strconv.Atoi(strings.TrimSpace(from))
	r[1], err2 = strconv.Atoi(strings.TrimSpace(to))
	if !ok || err1 != nil || err2 != nil || r[0] < 1 || r[1] > 65535 || r[0] > r[1] {
		return r, fmt.Errorf("--port-range must be FROM-TO with 1 <= FROM <= TO <= 65535, got %q", s)
	}
	return r, nil
}

// applyAtStart applies spec files once the API serves, logging progress.
func applyAtStart(ctx context.Context, log *slog.Logger, c *client.Client, files []string) {
	for _, f := range files {
		data, err := readSpecFile(f)
		if err != nil {
			log.Error("apply", "file", f, "err", err)
			continue
		}
		for _, doc := range splitDocuments(data) {
			res, err := c.Apply(ctx, "", doc)
			if err != nil {
				log.Error("apply", "file", f, "err", applyError(f, err))
				continue
			}
			log.Info("applied", "app", res.App.Name, "revision", res.App.Revision, "changed", res.Changed)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			v, err := c.WaitConverged(wctx, res.App.Namespace, res.App.Name, client.WaitOptions{})
			cancel()
			if err != nil {
				log.Warn("app not converged yet", "app", res.App.Name, "status", progressLine(v))
				continue
			}
			log.Info("app ready", "app", v.Name, "ready", v.Status.Ready, "try", "berth ps "+v.Name)
		}
	}
}
