package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/clusterview"
	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/docker"
	"github.com/berth-dev/berth/internal/driver/mock"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/store/remote"
)

// AgentOptions configure `berth agent`: one node's agent and drivers,
// talking to a `berth server` over mutual TLS.
type AgentOptions struct {
	// Server is the server's URL (https://HOST:PORT).
	Server string
	// JoinToken is needed at first start (or after the certificate
	// expired or the node was removed); later starts reuse the saved
	// certificate.
	JoinToken string
	// DataDir holds the agent's credentials (agent/) and the native
	// runtime state.
	DataDir string
	// NodeName defaults to the hostname.
	NodeName string
	// Address is the node's address others reach its instances at
	// (default: the local address used to reach the server).
	Address        string
	PortRange      [2]int
	NodeLabels     map[string]string
	WorkloadLabels map[string]string
	Native         NativeOptions
	// NoDocker leaves the docker driver out.
	NoDocker bool
	// DockerNetwork names the berth Docker network (default
	// docker.DefaultNetworkName) on the docker half of the node subnet.
	DockerNetwork string
	// DNS configures node DNS, served from the server's cluster view.
	DNS DNSOptions
	// Isolation configures network isolation between apps.
	Isolation IsolationOptions
	// MockImages, when set, adds the mock driver with these images (for
	// tests and simulations; workloads live in the agent's memory).
	MockImages []string
	// Heartbeat interval (default agent.DefaultHeartbeat).
	Heartbeat time.Duration
	// ClockSkew shifts this agent's clock (heartbeat stamps, TLS) to
	// test that skew between hosts does not mark healthy nodes down.
	ClockSkew time.Duration
	// AgentListen is where the agent serves the server (logs); "off"
	// for nowhere (default DefaultAgentListen).
	AgentListen string
	// Simulated marks one of many agents sharing a host (benchmarks):
	// the host's listening ports are not scanned.
	Simulated bool
	Version   string
	Log       *slog.Logger
}

// RunAgent joins the cluster if needed and runs the agent until ctx
// ends. While the server is unreachable the workloads keep running and
// the agent retries with backoff; it resumes from the last revision seen.
func RunAgent(ctx context.Context, o AgentOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.NodeName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return fmt.Errorf("cannot determine the node name (%v); pass --node-name", err)
		}
		o.NodeName = host
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", o.DataDir, err)
	}
	id, ok := loadIdentity(filepath.Join(o.DataDir, "agent"), o.NodeName, o.Server)
	id.skew = o.ClockSkew
	if !ok {
		if o.JoinToken == "" {
			return errors.New("this agent has not joined yet (or its certificate expired): pass --join-token from 'berth token create' on the server")
		}
		if err := id.join(ctx, o.JoinToken); err != nil {
			return err
		}
		o.Log.Info("joined the cluster", "server", o.Server, "node", o.NodeName, "certExpires", id.cert.Load().Leaf.NotAfter)
	}
	if o.Address == "" {
		o.Address = localAddrTowards(o.Server)
	}
	drivers := map[string]driver.Driver{}
	an := newAgentNet()
	if !o.DNS.Disabled && !o.Native.NoNetwork {
		o.Native.DNSFrom = an.nodeDNS
	}
	if !o.NoDocker {
		if dock, err := docker.New(docker.Options{Node: o.NodeName, NetworkFrom: an.dockerNetwork}); err == nil {
			drivers["docker"] = dock
		} else {
			o.Log.Warn("docker driver unavailable", "err", err)
		}
	}
	nat, err := startNative(o.DataDir, o.NodeName, o.Native, o.Log)
	if err != nil {
		return err
	}
	defer nat.close()
	nat.drivers(drivers)
	if len(o.MockImages) > 0 {
		drivers["mock"] = mock.New(mock.Options{Node: o.NodeName, Images: o.MockImages})
	}
	st := remote.New(remote.Options{Server: o.Server, TLS: id.tlsConfig(), Log: o.Log, Session: true})
	defer st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go id.renewLoop(ctx, o.Log, st.Reconnect)
	if !o.Simulated { // simulated agents share the host's netns and run no networked workloads
		defer startIsolation(ctx, clusterview.New(clusterview.Options{Server: o.Server, TLS: id.tlsConfig(), Log: o.Log}), o.NodeName, o.Native, o.Isolation, o.Log)()
	}
	if nat.lazy != nil {
		nn := &nodeNet{st: st, node: o.NodeName, address: o.Address, nat: nat, opts: o.Native, log: o.Log}
		go nn.run(ctx)
	}
	go an.run(ctx, agentNetOptions{Store: st, Source: clusterview.New(clusterview.Options{Server: o.Server, TLS: id.tlsConfig(), Log: o.Log}),
		Node: o.NodeName, DNS: o.DNS, Native: o.Native, DockerNetwork: o.DockerNetwork, NoDocker: o.NoDocker, Log: o.Log})
	secretsOverAPI := client.NodeSecrets{C: client.NewNode(o.Server, id.tlsConfig())}
	var current currentAgent
	agentAPI, err := startAgentEndpoint(ctx, o.AgentListen, o.Address, o.NodeName, id, &current, o.Log)
	if err != nil {
		return err
	}
	backoff := 500 * time.Millisecond
	for {
		// One attempt runs until ctx ends, or fails before it started
		// any instance (register or the first listing); then retry.
		actx, acancel := context.WithCancel(ctx)
		ag := agent.New(agent.Options{Store: st, Drivers: drivers, NodeName: o.NodeName, Address: o.Address,
			Labels: o.NodeLabels, WorkloadLabels: o.WorkloadLabels, PortRange: o.PortRange, Heartbeat: o.Heartbeat, SkipPortScan: o.Simulated,
			Events: events.NewRecorder(st, o.Log), Log: o.Log, Version: o.Version, Secrets: secretsOverAPI, AgentAPI: agentAPI,
			Now: func() time.Time { return time.Now().Add(o.ClockSkew) }})
		current.p.Store(ag)
		err := ag.Run(actx)
		acancel()
		if ctx.Err() != nil {
			o.Log.Info("berth agent stopped; workloads keep running and are reattached at the next start")
			return nil
		}
		if remote.IsForbidden(err) || isUnauthorized(err) {
			return fmt.Errorf("the server refused this agent: %w", err)
		}
		o.Log.Warn("agent could not start; retrying", "err", err, "in", backoff)
		if !ctxsleep.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func isUnauthorized(err error) bool {
	var e *remote.Error
	return errors.As(err, &e) && e.Status == 401
}

// localAddrTowards is the local IP the kernel would use to reach server.
func localAddrTowards(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return ""
	}
	defer c.Close()
	host, _, _ := net.SplitHostPort(c.LocalAddr().String())
	return host
}
