package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/agentapi"
	"github.com/berth-dev/berth/internal/model"
)

// currentAgent is the agent of the running attempt (RunAgent makes a new
// one per attempt); the agent endpoint serves through it.
type currentAgent struct{ p atomic.Pointer[agent.Agent] }

func (c *currentAgent) InstanceLogs(ctx context.Context, in model.Instance, follow bool, tail int) (io.ReadCloser, error) {
	a := c.p.Load()
	if a == nil {
		return nil, fmt.Errorf("the agent of node %s is starting", in.Node)
	}
	return a.InstanceLogs(ctx, in, follow, tail)
}

// startAgentEndpoint serves the agent's endpoint for the server on
// listen ("off" or empty: none) and returns the address to advertise:
// the listen address, with the node address for a wildcard host.
func startAgentEndpoint(ctx context.Context, listen, nodeAddr, node string, id *identity, logs *currentAgent, log *slog.Logger) (string, error) {
	if listen == "" || listen == "off" {
		return "", nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("agent endpoint: listen on %s: %w (use --agent-listen, or off)", listen, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); (ip == nil || ip.IsUnspecified()) && nodeAddr != "" {
		host = nodeAddr
	}
	go func() {
		err := agentapi.Serve(ctx, ln, agentapi.ServerOptions{Node: node, CA: id.ca, Logs: logs, Log: log,
			Certificate: func() *tls.Certificate { return id.cert.Load() }})
		if err != nil {
			log.Error("agent endpoint stopped", "err", err)
		}
	}()
	return net.JoinHostPort(host, port), nil
}

// DefaultAgentListen is where `berth agent` serves the server.
var DefaultAgentListen = ":" + strconv.Itoa(agentapi.DefaultPort)
