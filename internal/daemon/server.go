package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/agentapi"
	"github.com/berth-dev/berth/internal/api"
	"github.com/berth-dev/berth/internal/cliconfig"
	"github.com/berth-dev/berth/internal/controller/deployment"
	"github.com/berth-dev/berth/internal/controller/drain"
	"github.com/berth-dev/berth/internal/controller/nodes"
	"github.com/berth-dev/berth/internal/controller/placement"
	"github.com/berth-dev/berth/internal/controller/subnets"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/state"
	"github.com/berth-dev/berth/internal/store"
)

// ServerOptions configure `berth server`: API (TLS), controllers and the
// store, with no agent.
type ServerOptions struct {
	// DataDir holds the store, the admin token and the CA (pki/).
	DataDir string
	// Listen is the API address (default DefaultListen; ":7070" for a
	// cluster).
	Listen string
	// Advertise are extra names or IPs agents reach the server by; the
	// server certificate covers them.
	Advertise []string
	// WriteContext saves the CLI context (URL, admin token, CA).
	WriteContext bool
	// Nodes tunes node liveness (zero values: the nodes package defaults).
	Nodes NodeTimings
	// Network is where node subnets come from.
	Network ClusterNetwork
	// ClientCertTTL is the lifetime of agent certificates.
	ClientCertTTL time.Duration
	Version       string
	Log           *slog.Logger
	// Ready, if set, is called once the API is serving.
	Ready func(url, token string)
}

// ClusterNetwork is the cluster CIDR node subnets are allocated from.
type ClusterNetwork struct {
	// CIDR defaults to subnets.DefaultClusterCIDR.
	CIDR string
	// SubnetSize is a node subnet's prefix length (default
	// subnets.DefaultSubnetSize).
	SubnetSize int
}

// pool checks the cluster network, naming the flags in errors.
func (c ClusterNetwork) pool() (subnets.Pool, error) {
	if c.CIDR == "" {
		c.CIDR = subnets.DefaultClusterCIDR
	}
	if c.SubnetSize == 0 {
		c.SubnetSize = subnets.DefaultSubnetSize
	}
	p, err := subnets.ParsePool(c.CIDR, c.SubnetSize)
	if err != nil {
		flag := "--cluster-cidr"
		if strings.HasPrefix(err.Error(), "node subnet size") {
			flag = "--node-subnet-size"
		}
		return p, fmt.Errorf("%s: %w", flag, err)
	}
	return p, nil
}

// NodeTimings are the node controller's thresholds.
type NodeTimings struct {
	UnreachableAfter, Grace, RecoverAfter time.Duration
}

// RunServer runs the API over TLS, the controllers and the store until
// ctx ends. Agents join with tokens from `berth token create`.
func RunServer(ctx context.Context, o ServerOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
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
	pkiDir := filepath.Join(o.DataDir, "pki")
	ca, err := pki.LoadOrCreateCA(pkiDir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another berth running? use --listen)", o.Listen, err)
	}
	hosts := certHosts(ln.Addr().String(), o.Advertise)
	cert, err := ca.ServerCert(pkiDir, hosts)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server certificate: %w", err)
	}
	// Send the CA with the leaf: a joining agent pins it by fingerprint.
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	rec := events.NewRecorder(st, o.Log)
	secretStore, err := openSecrets(o.DataDir, st)
	if err != nil {
		ln.Close()
		return err
	}
	// Logs live on the nodes: read them from each agent's endpoint.
	logs := &agentapi.Logs{CA: ca.Pool(), Certificate: cert, Node: func(ctx context.Context, name string) (model.Node, error) {
		n, err := store.GetJSON[model.Node](ctx, st, model.NodeKey(name))
		return n.Value, err
	}}
	live := nodes.NewLiveness()  // heartbeats stay in memory (docs/cluster.md)
	view := state.New(st, o.Log) // one decoded copy of the hot prefixes for every reader
	srv := api.New(api.Options{Store: st, State: view, AdminToken: token, Log: o.Log, CA: ca, ClientCertTTL: o.ClientCertTTL, Secrets: secretStore, Logs: logs, Liveness: live,
		Version: model.VersionInfo{Version: o.Version, Store: "bolt " + filepath.Join(o.DataDir, "berth.db")}})
	url := "https://" + urlHost(ln.Addr().String(), o.Advertise)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Requests inherit ctx, so long watch streams end at shutdown.
	httpSrv := newAPIServer(srv)
	httpSrv.TLSConfig, httpSrv.BaseContext = tlsConf, func(net.Listener) context.Context { return ctx }
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	view.Cache.Start(ctx)
	goRun(func() { deployment.New(deployment.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() { placement.New(placement.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() {
		nodes.New(nodes.Options{Store: st, State: view, Events: rec, Log: o.Log, Grace: o.Nodes.Grace, Liveness: live,
			UnreachableAfter: o.Nodes.UnreachableAfter, RecoverAfter: o.Nodes.RecoverAfter}).Run(ctx)
	})
	goRun(func() { drain.New(drain.Options{Store: st, State: view, Events: rec, Log: o.Log}).Run(ctx) })
	goRun(func() { subnets.New(subnets.Options{Store: st, State: view, Pool: pool, Log: o.Log}).Run(ctx) })
	goRun(func() { trimEvents(ctx, st, o.Log) })
	goRun(func() {
		if err := httpSrv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	})
	if o.WriteContext {
		if err := cliconfig.Save(cliconfig.Context{Server: url, Token: token, CA: string(ca.CertPEM)}); err != nil {
			o.Log.Warn("could not write CLI context", "path", cliconfig.Path(), "err", err)
		}
	}
	o.Log.Info("berth server is up", "api", url, "data", o.DataDir, "ca", filepath.Join(pkiDir, "ca.crt"),
		"caFingerprint", ca.Fingerprint(), "certHosts", hosts, "join", "berth token create, then berth agent --server "+url+" --join-token TOKEN")
	if o.Ready != nil {
		o.Ready(url, token)
	}
	err = waitThenShutdown(ctx, cancel, errc, httpSrv, &wg)
	o.Log.Info("berth server stopped; agents keep their workloads running and reconnect")
	return err
}

// certHosts are the names the server certificate covers: the listen
// address (or, for a wildcard, this host's addresses), loopback, the
// hostname and the advertised names.
func certHosts(listen string, advertise []string) []string {
	hosts := []string{"127.0.0.1", "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					hosts = append(hosts, n.IP.String())
				}
			}
		}
	} else if host != "" {
		hosts = append(hosts, host)
	}
	for _, a := range advertise {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		hosts = append(hosts, a)
	}
	seen := map[string]bool{}
	out := hosts[:0]
	for _, h := range hosts {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// urlHost is host:port for the CLI context: the first advertised name,
// else the listen address (loopback for a wildcard).
func urlHost(listen string, advertise []string) string {
	_, port, _ := net.SplitHostPort(listen)
	if len(advertise) > 0 {
		if _, _, err := net.SplitHostPort(advertise[0]); err == nil {
			return advertise[0]
		}
		return net.JoinHostPort(advertise[0], port)
	}
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
