// Package daemon assembles a berth process: store, API server,
// controllers and the local agent. `berth up` runs all of them in one
// process on the embedded store.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/cliconfig"
	"github.com/berth-dev/berth/internal/controller/deployment"
	"github.com/berth-dev/berth/internal/controller/drain"
	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/controller/placement"
	"github.com/berth-dev/berth/internal/controller/subnets"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/docker"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/network/dns"
	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/secrets"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/bolt"
)

// Options configure `berth up`.
type Options struct {
	// DataDir holds the store (berth.db) and the admin token.
	DataDir string
	// Listen is the API address (default 127.0.0.1:7070).
	Listen string
	// NodeName defaults to the hostname.
	NodeName string
	// PortRange is where assigned host ports come from (default
	// model.DefaultPortRange).
	PortRange [2]int
	// WorkloadLabels are added to every workload started on this node.
	WorkloadLabels map[string]string
	// WriteContext saves the CLI context (server URL and admin token).
	WriteContext bool
	Version      string
	Log          *slog.Logger
	// Ready, if set, is called once the API is serving.
	Ready func(url, token string)
	// Native configures the image store, node network and drivers oci
	// and process.
	Native NativeOptions
	// Router configures the edge router; an empty Listen and TLSListen
	// turn it off.
	Router RouterOptions
	// NodeLabels are put on this node (region, zone, disk ...).
	NodeLabels map[string]string
	// DNS configures the node DNS server (<app>.<namespace>.berth).
	DNS DNSOptions
	// Isolation configures network isolation between apps.
	Isolation IsolationOptions
	// DockerNetwork names the berth Docker network docker containers use
	// (the docker half of the node subnet; default docker.DefaultNetworkName).
	DockerNetwork string
	// Network is where the node's subnet comes from; the node network
	// uses its native half unless Native.Subnet is set.
	Network ClusterNetwork
}

// RouterOptions are the edge router's listen addresses.
type RouterOptions struct {
	Listen, TLSListen, MetricsListen string
	// Optional lets berth run without its router when an address is
	// taken (the defaults), with a warning, instead of failing.
	Optional bool
	// AccessLog gets one line per request; nil means none.
	AccessLog io.Writer
}

// DefaultDataDir is /var/lib/berth for root, else ~/.local/share/berth.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/berth"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "berth")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "berth")
}

// DefaultListen is the API's default address.
const DefaultListen = "127.0.0.1:7070"

// DefaultRouterListen is the edge router's default HTTP address.
const DefaultRouterListen = "127.0.0.1:8080"

// eventsKept bounds the stored event history.
const eventsKept = 10000

// RunUp runs server, controllers and a local agent until ctx ends.
// Workloads keep running after it returns.
func RunUp(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.NodeName == "" {
		// Resolve it here: the driver scopes its workloads by node name,
		// and an empty one would claim every berth container on the host.
		host, err := os.Hostname()
		if err != nil || host == "" {
			return fmt.Errorf("cannot determine the node name (%v); pass --node-name", err)
		}
		o.NodeName = host
	}
	pool, err := o.Network.pool()
	if err != nil {
		return err
	}
	st, token, err := openStore(o.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	subnet, err := subnets.Reserve(ctx, st, pool, o.NodeName)
	if err != nil {
		return fmt.Errorf("node subnet: %w", err)
	}
	if !o.Native.Subnet.IsValid() {
		o.Native.Subnet, _, _ = model.NativeSubnet(subnet.String())
	}
	dockNet, err := docker.NetworkFor(o.DockerNetwork, subnet.String())
	if err != nil {
		return fmt.Errorf("docker network: %w", err)
	}
	nodeDNS, err := startDNS(dns.NewStoreSource(st, o.Log), o.DNS, nodeGateways(o.DNS, o.Native, dockNet, o.Log), o.Log)
	if err != nil {
		return fmt.Errorf("node DNS: %w (use --dns-listen to pick other addresses, or --no-dns)", err)
	}
	dockOpts := docker.Options{Node: o.NodeName, Network: dockNet}
	if nodeDNS != nil {
		defer nodeDNS.srv.Close() // on an early return; Run closes it too
		o.Native.DNS = nodeDNS.native
		nodeDNS.useDocker(&dockOpts, dockNet)
	}
	dock, err := docker.New(dockOpts)
	if err != nil {
		return fmt.Errorf("docker driver: %w", err)
	}
	nat, err := startNative(o.DataDir, o.NodeName, o.Native, o.Log)
	if err != nil {
		return err
	}
	defer nat.close()
	drivers := map[string]driver.Driver{"docker": dock}
	nat.drivers(drivers)
	var images api.ImageStore
	if nat.images != nil {
		images = imageAPI{nat.images}
	}
	var rt *router.Router
	if o.Router.Listen != "" || o.Router.TLSListen != "" {
		rt, err = router.New(router.Options{Source: router.NewStoreSource(st, o.Log), Listen: o.Router.Listen,
			TLSListen: o.Router.TLSListen, MetricsListen: o.Router.MetricsListen, AccessLog: o.Router.AccessLog, Log: o.Log})
		switch {
		case err != nil && o.Router.Optional:
			o.Log.Warn("edge router not started (pass --router-listen to choose its address)", "err", err)
			rt = nil
		case err != nil:
			return fmt.Errorf("%w (use --router-listen to pick another address, or \"\" to turn it off)", err)
		}
	}
	rec := events.NewRecorder(st, o.Log)
	secretStore, err := openSecrets(o.DataDir, st)
	if err != nil {
		return err
	}
	ag := agent.New(agent.Options{Store: st, Drivers: drivers, Labels: o.NodeLabels, Secrets: secretStore,
		NodeName: o.NodeName, PortRange: o.PortRange, WorkloadLabels: o.WorkloadLabels, Events: rec, Log: o.Log, Version: o.Version})
	view := state.New(st, o.Log) // one decoded copy of the hot prefixes for every reader
	srv := api.New(api.Options{Store: st, State: view, AdminToken: token, Logs: ag, Log: o.Log, Images: images, Secrets: secretStore,
		Version: model.VersionInfo{Version: o.Version, Store: "bolt " + filepath.Join(o.DataDir, "berth.db")}})
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another berth running? use --listen)", o.Listen, err)
	}
	url := "http://" + ln.Addr().String()
	httpSrv := newAPIServer(srv)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer startIsolation(ctx, router.NewStoreSource(st, o.Log), o.NodeName, o.Native, o.Isolation, o.Log)()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	view.Cache.Start(ctx)
	goRun(func() {
		if err := ag.Run(ctx); err != nil {
			errc <- fmt.Errorf("agent: %w", err)
		}
	})
	// Canary analysis reads the router's per-revision figures in-process.
	var revStats deployment.Metrics
	if rt != nil {
		revStats = rt
	}
	goRun(func() {
		deployment.New(deployment.Options{Store: st, State: view, Events: rec, Log: o.Log, Metrics: revStats}).Run(ctx)
	})
	goRun(func() { placement.New(placement.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() { nodes.New(nodes.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() { drain.New(drain.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() {
		subnets.New(subnets.Options{Store: st, State: view, Pool: pool, Log: o.Log, Keep: []string{o.NodeName}}).Run(ctx)
	})
	goRun(func() { trimEvents(ctx, st, o.Log) })
	goRun(func() { nat.gcImages(ctx, o.Native, o.Log) })
	if nodeDNS != nil {
		goRun(func() {
			if err := nodeDNS.run(ctx); err != nil {
				errc <- err
			}
		})
	}
	if rt != nil {
		goRun(func() {
			if err := rt.Run(ctx); err != nil {
				errc <- fmt.Errorf("router: %w", err)
			}
		})
	}
	goRun(func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	})
	if o.WriteContext {
		if err := cliconfig.Save(cliconfig.Context{Server: url, Token: token}); err != nil {
			o.Log.Warn("could not write CLI context", "path", cliconfig.Path(), "err", err)
		}
	}
	o.Log.Info("berth is up", "api", url, "data", o.DataDir, "context", cliconfig.Path())
	if rt != nil {
		a := rt.Addrs()
		o.Log.Info("router is up", "http", a.HTTP, "https", a.HTTPS, "metrics", a.Metrics)
	}
	if nodeDNS != nil {
		o.Log.Info("node DNS is up", "listen", nodeDNS.srv.Addrs(), "upstreams", nodeDNS.srv.Upstreams())
	}
	if o.Ready != nil {
		o.Ready(url, token)
	}
	err = waitThenShutdown(ctx, cancel, errc, httpSrv, &wg)
	o.Log.Info("berth stopped; workloads keep running and are reattached at the next start")
	return err
}

// openStore creates dataDir if needed, opens the embedded store in it and
// reads (or, at first start, makes) the admin token.
func openStore(dataDir string) (*bolt.Store, string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("data dir %s: %w", dataDir, err)
	}
	st, err := bolt.Open(filepath.Join(dataDir, "berth.db"), bolt.Options{})
	if err != nil {
		return nil, "", err
	}
	token, err := adminToken(dataDir)
	if err != nil {
		st.Close()
		return nil, "", err
	}
	return st, token, nil
}

// adminToken reads DataDir/admin.token, creating it at first start.
func adminToken(dir string) (string, error) {
	p := filepath.Join(dir, "admin.token")
	b, err := os.ReadFile(p)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("admin token file %s is empty; remove it to make a new one", p)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := "berth_" + hex.EncodeToString(raw[:])
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return tok, nil
}

// trimEvents keeps the event history bounded.
func trimEvents(ctx context.Context, st store.Store, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := events.Trim(ctx, st, eventsKept); err != nil && ctx.Err() == nil {
			log.Warn("trim events", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openSecrets opens the secrets service: values sealed with the key in
// dataDir (made at first start), stored in st.
func openSecrets(dataDir string, st store.Store) (*secrets.Service, error) {
	box, err := secrets.OpenBox(dataDir)
	if err != nil {
		return nil, err
	}
	return &secrets.Service{Store: st, Box: box}, nil
}

// waitThenShutdown blocks until ctx ends or a part reports an error on
// errc, then cancels the rest, stops the API server (5s for requests in
// flight) and waits for every loop to return. Workloads keep running.
func waitThenShutdown(ctx context.Context, cancel context.CancelFunc, errc <-chan error, srv *http.Server, wg *sync.WaitGroup) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	return err
}
