package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/network/cni"
	"github.com/berth-dev/berth/internal/network/policy"
	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/router/table"
)

// IsolationOptions configure network isolation between apps (see
// docs/network.md, "Isolation").
type IsolationOptions struct {
	// Disabled lets traffic between networks pass: the node's table is
	// removed at start and nothing is enforced.
	Disabled bool
}

// isolationRetry is the pause before retrying a failed load or source.
const isolationRetry = time.Second

// isolationTable is the nftables table of a node whose node network uses
// bridge: "berth" for the default bridge, "berth-<bridge>" otherwise, so
// several berths on one host (tests) keep apart.
func isolationTable(bridge string) string {
	if bridge == "" || bridge == cni.DefaultBridgeName {
		return policy.DefaultTable
	}
	return policy.DefaultTable + "-" + bridge
}

// startIsolation keeps node's isolation table in line with the cluster
// read from src until ctx ends or stop is called; stop waits for the table
// to be removed. n names the node network's bridge and subnet (policed
// as instance addresses). Enforcement failures are logged and retried:
// workloads keep running, unisolated, meanwhile.
func startIsolation(ctx context.Context, src router.Source, node string, n NativeOptions, o IsolationOptions, log *slog.Logger) (stop func()) {
	ap, err := policy.NewApplier(isolationTable(n.Bridge))
	if err != nil {
		log.Error("network isolation unavailable: traffic between networks is NOT dropped", "err", err)
		return func() {}
	}
	if o.Disabled {
		if err := ap.Remove(); err != nil {
			log.Warn("network isolation off; could not remove its table", "err", err)
		}
		ap.Close()
		return func() {}
	}
	checkBridgeNetfilter(log)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ranges []netip.Prefix
		if n.Subnet.IsValid() && !n.Disabled && !n.NoNetwork {
			ranges = append(ranges, n.Subnet)
		}
		enforce(ctx, ap, src, policy.Input{Node: node, Ranges: ranges}, log)
		if err := ap.Remove(); err != nil {
			log.Warn("network isolation: could not remove its table", "err", err)
		}
		ap.Close()
	}()
	return func() { cancel(); <-done }
}

// enforce applies the ruleset of every snapshot of src (the cluster
// part of in) until ctx ends.
func enforce(ctx context.Context, ap *policy.Applier, src router.Source, in policy.Input, log *slog.Logger) {
	loaded := false
	for ctx.Err() == nil {
		snaps, err := src.Snapshots(ctx)
		if err != nil {
			log.Warn("network isolation: cannot read the cluster; retrying", "err", err)
			ctxsleep.Sleep(ctx, isolationRetry)
			continue
		}
		var pending *table.Snapshot
		retry := time.NewTimer(0)
		retry.Stop()
		for open := true; open; {
			select {
			case <-ctx.Done():
				retry.Stop()
				return
			case s, ok := <-snaps:
				if open = ok; ok {
					pending = &s
				}
			case <-retry.C:
			}
			if pending == nil {
				continue
			}
			in.Apps, in.Instances, in.Nodes = pending.Apps, pending.Instances, pending.Nodes
			r := policy.Build(in)
			changed, err := ap.Apply(r)
			if err != nil {
				log.Warn("network isolation: cannot load the ruleset; retrying", "table", ap.Table(), "err", err)
				retry.Reset(isolationRetry)
				continue
			}
			if !loaded {
				loaded = true
				log.Info("network isolation is up", "table", "inet "+ap.Table(), "local", len(r.Dests), "sources", len(r.Sources))
			}
			if changed {
				log.Debug("network isolation applied", "table", ap.Table(), "rev", pending.Rev,
					"local", len(r.Dests), "sources", len(r.Sources), "ranges", len(r.Ranges), "chains", len(r.Chains))
			}
			pending = nil
		}
	}
}

// bridgeNFCall is the switch that hands bridged IPv4 frames to the inet
// hooks, so traffic between workloads on one bridge meets the table.
const bridgeNFCall = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// checkBridgeNetfilter turns bridgeNFCall on, or warns that same-bridge
// traffic is not isolated when br_netfilter is missing.
func checkBridgeNetfilter(log *slog.Logger) {
	b, err := os.ReadFile(bridgeNFCall)
	switch {
	case err != nil:
		log.Warn("network isolation: br_netfilter is not loaded, so traffic between workloads on the same node bridge is NOT isolated (modprobe br_netfilter)", "err", err)
	case strings.TrimSpace(string(b)) != "1":
		if err := os.WriteFile(bridgeNFCall, []byte("1"), 0o644); err != nil {
			log.Warn("network isolation: cannot set net.bridge.bridge-nf-call-iptables=1; traffic on the same node bridge is NOT isolated", "err", err)
		} else {
			log.Info("network isolation: set net.bridge.bridge-nf-call-iptables=1")
		}
	}
}
