package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/router"
	"github.com/berth-dev/berth/internal/store/bolt"
)

func newRouter() *cobra.Command {
	o := router.Options{}
	var dataDir, logLevel string
	var accessLog bool
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Run the edge router alone on a berth store",
		Long: `Run the edge router: it routes requests for the hosts and paths of app
routes to their ready instances (HTTP/1.1, HTTP/2, WebSocket, TCP), with TLS
certificates from 'berth cert add' and Prometheus metrics.

This standalone form opens the embedded store in --data-dir directly, so it
only works while 'berth up' is not running on that store (the store allows
one process). Next to 'berth up', run the router inside it instead.`,
		Example: "  berth router --data-dir /tmp/berth --listen :8080 --tls-listen :8443 --metrics-listen 127.0.0.1:9100",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			st, err := bolt.Open(filepath.Join(dataDir, "berth.db"), bolt.Options{})
			if err != nil {
				return fmt.Errorf("%w (is 'berth up' running on %s? then run the router inside it)", err, dataDir)
			}
			defer st.Close()
			o.Source = router.NewStoreSource(st, log)
			o.Log = log
			if accessLog {
				o.AccessLog = io.Writer(os.Stdout)
			}
			r, err := router.New(o)
			if err != nil {
				return err
			}
			a := r.Addrs()
			log.Info("router is up", "http", a.HTTP, "https", a.HTTPS, "metrics", a.Metrics)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return r.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", daemon.DefaultDataDir(), "where the embedded store lives")
	f.StringVar(&o.Listen, "listen", ":8080", "plain HTTP (and h2c) address; empty disables")
	f.StringVar(&o.TLSListen, "tls-listen", ":8443", "HTTPS address; empty disables")
	f.StringVar(&o.MetricsListen, "metrics-listen", "127.0.0.1:9100", "Prometheus /metrics address; empty disables")
	f.StringVar(&o.TCPHost, "tcp-host", "", "address tcp routes' listen ports bind on (default: every interface)")
	f.IntVar(&o.HTTPSPort, "https-port", 0, "port HTTP→HTTPS redirects point to (default: the --tls-listen port)")
	f.BoolVar(&accessLog, "access-log", true, "write one line per request to stdout")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
