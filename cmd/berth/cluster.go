package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/controller/subnets"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/driver/docker"
	"github.com/berth-dev/berth/internal/model"
)

func newLogger(level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

func newServer() *cobra.Command {
	o := daemon.ServerOptions{WriteContext: true}
	var logLevel, memoryLimit string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the berth control plane: API (TLS), controllers and store, without an agent",
		Long: `Run the control plane of a berth cluster: the API over TLS, the controllers
and the embedded store in --data-dir. At first start it makes the cluster
CA (data-dir/pki) and a server certificate for --listen and --advertise.
Agents join with a token from 'berth token create':

  berth server --listen :7070 --advertise 10.0.0.1
  berth token create --ttl 1h
  berth agent --server https://10.0.0.1:7070 --join-token berth-join-...   # on each node

It writes the CLI context (URL, admin token, CA) so berth commands on this
host work with no flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Log, err = newLogger(logLevel); err != nil {
				return err
			}
			if err := setMemoryLimit(memoryLimit); err != nil {
				return err
			}
			o.Version = version
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.RunServer(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", daemon.DefaultDataDir(), "where the store, admin token and CA live")
	f.StringVar(&o.Listen, "listen", daemon.DefaultListen, "API listen address (:7070 to serve agents on other hosts)")
	f.StringSliceVar(&o.Advertise, "advertise", nil, "address(es) agents reach this server at; the server certificate covers them")
	f.DurationVar(&o.Nodes.UnreachableAfter, "node-unreachable-after", nodes.DefaultUnreachableAfter, "a node silent this long gets no new instances")
	f.DurationVar(&o.Nodes.Grace, "node-down-after", nodes.DefaultGrace, "a node silent this long is down; its instances are replaced elsewhere")
	f.DurationVar(&o.Nodes.RecoverAfter, "node-recover-after", nodes.DefaultRecoverAfter, "a down node must heartbeat steadily this long before it gets work again")
	f.DurationVar(&o.ClientCertTTL, "agent-cert-ttl", 24*time.Hour, "lifetime of agent certificates (renewed at 2/3)")
	clusterNetworkFlags(f, &o.Network)
	f.StringVar(&memoryLimit, "memory-limit", "", "soft memory limit of the server process (e.g. 256MiB; Go's GOMEMLIMIT): the GC works harder to stay under it (docs/cluster.md, \"Scale\")")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// clusterNetworkFlags adds the flags of the cluster CIDR node subnets
// are allocated from (berth server, berth up).
func clusterNetworkFlags(f *pflag.FlagSet, c *daemon.ClusterNetwork) {
	f.StringVar(&c.CIDR, "cluster-cidr", subnets.DefaultClusterCIDR, "IPv4 range node subnets are allocated from (one per node, routed between nodes over the VXLAN overlay)")
	f.IntVar(&c.SubnetSize, "node-subnet-size", subnets.DefaultSubnetSize, "prefix length of each node's subnet (first half: oci/process bridge, second half: docker network)")
}

// nodeDNSFlags adds the node DNS and berth Docker network flags (berth
// up, berth agent).
func nodeDNSFlags(f *pflag.FlagSet, d *daemon.DNSOptions, dockerNetwork *string) {
	f.StringSliceVar(&d.Listen, "dns-listen", nil, "more addresses for node DNS (e.g. 127.0.0.1:5353 for the host); it always serves on the node network's and the berth Docker network's gateways, port 53")
	f.BoolVar(&d.Disabled, "no-dns", false, "no node DNS: workloads use the host's resolvers and cannot resolve <app>.<namespace>.berth")
	f.StringSliceVar(&d.Upstreams, "dns-upstream", nil, "resolvers for names outside berth, host:port (default: the name servers of /etc/resolv.conf)")
	f.StringVar(dockerNetwork, "docker-network", docker.DefaultNetworkName, "name of the berth-managed Docker network docker containers join (the second half of the node's subnet)")
}

func newAgent() *cobra.Command {
	o := daemon.AgentOptions{}
	var logLevel, portRange, subnet string
	var noNative bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent that joins a berth server and runs the instances placed on this host",
		Long: `Run a node's agent and its drivers. At first start it joins the server with
a join token: it checks the server against the CA fingerprint the token
carries, sends a certificate request and gets a client certificate with
the node name (saved in --data-dir/agent). Everything after is mutual TLS.

If the server goes away the workloads keep running; the agent reconnects
with backoff and catches up.`,
		Example: "  berth agent --server https://10.0.0.1:7070 --join-token berth-join-...",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Log, err = newLogger(logLevel); err != nil {
				return err
			}
			if o.Server == "" {
				return fmt.Errorf("--server is required (https://HOST:PORT of 'berth server')")
			}
			if o.PortRange, err = parsePortRange(portRange); err != nil {
				return err
			}
			o.Native.Disabled = noNative
			o.Native.FromServer = true
			if o.Native.OverlayPort < 1 || o.Native.OverlayPort > 65535 {
				return fmt.Errorf("--vxlan-port must be 1-65535, got %d", o.Native.OverlayPort)
			}
			if subnet != "" {
				if o.Native.Subnet, err = netip.ParsePrefix(subnet); err != nil || !o.Native.Subnet.Addr().Is4() {
					return fmt.Errorf("--bridge-subnet must be an IPv4 CIDR like 10.89.0.0/24, got %q", subnet)
				}
			}
			if o.JoinToken == "" {
				o.JoinToken = os.Getenv("BERTH_JOIN_TOKEN")
			}
			o.Version = version
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.RunAgent(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "", "URL of the berth server (https://HOST:PORT)")
	f.StringVar(&o.JoinToken, "join-token", "", "join token from 'berth token create' (env BERTH_JOIN_TOKEN; needed at first start)")
	f.StringVar(&o.DataDir, "data-dir", daemon.DefaultDataDir(), "where the agent's certificate and the native runtime state live")
	f.StringVar(&o.NodeName, "node-name", "", "this node's name (default: hostname)")
	f.StringVar(&o.Address, "address", "", "address of this node for traffic to its instances (default: the local address towards the server)")
	f.StringVar(&portRange, "port-range", fmt.Sprintf("%d-%d", model.DefaultPortRange[0], model.DefaultPortRange[1]),
		"host ports assigned to instances come from this range (FROM-TO)")
	f.StringToStringVar(&o.NodeLabels, "node-label", nil, "label of this node for constraints (key=value, repeatable)")
	f.StringToStringVar(&o.WorkloadLabels, "workload-label", nil, "extra label put on every workload this node starts (key=value, repeatable)")
	f.StringVar(&o.AgentListen, "agent-listen", daemon.DefaultAgentListen, "where this agent serves the server over mTLS (instance logs); off for nowhere")
	f.BoolVar(&noNative, "no-native", false, "docker only: no image store, node network, driver oci or process")
	f.BoolVar(&o.NoDocker, "no-docker", false, "leave the docker driver out")
	nodeDNSFlags(f, &o.DNS, &o.DockerNetwork)
	f.BoolVar(&o.Isolation.Disabled, "no-isolation", false, "let traffic between app networks pass (no nftables table berth)")
	f.BoolVar(&o.Native.NoNetwork, "no-node-network", false, "no node network: process instances share the host's network (no published ports)")
	f.StringVar(&o.Native.Bridge, "bridge", "", "node network bridge for oci and process instances (default berth0)")
	f.StringVar(&subnet, "bridge-subnet", "", "IPv4 subnet of the node network if the server allocates this node none within --subnet-wait (default 10.89.0.0/24); normally the bridge gets the first half of the node's subnet")
	f.DurationVar(&o.Native.SubnetWait, "subnet-wait", daemon.DefaultSubnetWait, "how long to wait for the server to allocate this node's subnet before falling back to --bridge-subnet without the overlay")
	f.IntVar(&o.Native.OverlayPort, "vxlan-port", model.OverlayPort, "UDP port of the VXLAN overlay between nodes (the same on every node)")
	f.StringSliceVar(&o.Native.Runtimes, "runtimes", nil, "OCI runtimes to offer (runc, crun, runsc; default: every one installed)")
	f.StringVar(&o.Native.DefaultRuntime, "default-runtime", "", "OCI runtime for oci apps that name none (default runc)")
	f.StringVar(&o.Native.RegistryConfig, "registry-config", "", "docker config.json with registry credentials for image pulls")
	f.StringSliceVar(&o.Native.InsecureRegistries, "insecure-registry", nil, "registry host[:port] spoken to over plain HTTP (loopback always is)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringSliceVar(&o.MockImages, "mock-driver-images", nil, "add the in-memory mock driver with these images (tests and simulations)")
	f.DurationVar(&o.Heartbeat, "heartbeat", 0, "heartbeat interval (default 2s)")
	_ = f.MarkHidden("mock-driver-images")
	f.DurationVar(&o.ClockSkew, "clock-skew", 0, "shift this agent's clock (tests)")
	_ = f.MarkHidden("heartbeat")
	_ = f.MarkHidden("clock-skew")
	return cmd
}
