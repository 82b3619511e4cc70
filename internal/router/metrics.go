package router

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-dev/berth/internal/router/table"
)

// metrics are the router's Prometheus metrics, on a registry of its own
// (several routers in one process, as in tests, do not collide).
type metrics struct {
	// revs keeps outcomes by revision for canary analysis.
	revs      *revisionStats
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	conns     *prometheus.GaugeVec
	routes    prometheus.Gauge
	backends  prometheus.Gauge
	rebuilds  prometheus.Counter
	tableRev  prometheus.Gauge
	noTLSCert prometheus.Counter

	// cache holds the series the request path has resolved, so a request
	// costs a map lookup under a read lock instead of the vectors' label
	// hashing and strconv per request. It is emptied with every table.
	cacheMu   sync.RWMutex
	counters  map[requestKey]prometheus.Counter
	durations map[seriesKey]prometheus.Observer
}

// seriesKey names the series of one route and upstream.
type seriesKey struct{ route, upstream string }

// requestKey names one requests_total series.
type requestKey struct {
	seriesKey
	code int
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), revs: newRevisionStats(),
		counters: map[requestKey]prometheus.Counter{}, durations: map[seriesKey]prometheus.Observer{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_router_requests_total",
		Help: "Requests (and tcp connections, code 200) proxied, by route, upstream and status code."}, []string{"route", "upstream", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "berth_router_request_duration_seconds",
		Help:    "Time from receiving a request to the end of its response, by route and upstream.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "upstream"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_router_upstream_errors_total",
		Help: "Proxy errors by route, upstream and kind: connect (retried when possible), upstream, no_backend, client_gone."}, []string{"route", "upstream", "kind"})
	m.conns = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "berth_router_active_connections",
		Help: "Client connections open, by listener (http, https)."}, []string{"listener"})
	m.routes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_router_routes", Help: "Routes in the current table."})
	m.backends = prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_router_backends", Help: "Ready backends in the current table, over all routes."})
	m.rebuilds = prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_router_table_rebuilds_total", Help: "Route tables built from the store."})
	m.tableRev = prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_router_table_revision", Help: "Store revision of the current table."})
	m.noTLSCert = prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_router_tls_no_certificate_total", Help: "TLS handshakes refused for want of a certificate."})
	m.reg.MustRegister(m.requests, m.duration, m.errors, m.conns, m.routes, m.backends, m.rebuilds, m.tableRev, m.noTLSCert,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// upstreamActive is a collector reading the balancer's in-flight counts
// at scrape time, so the request path pays nothing for it.
type upstreamActive struct {
	b    *balancer
	desc *prometheus.Desc
}

func newUpstreamActive(b *balancer) *upstreamActive {
	return &upstreamActive{b: b, desc: prometheus.NewDesc("berth_router_upstream_active",
		"Requests and tcp connections in flight per upstream (what leastConnections balances on).", []string{"upstream"}, nil)}
}

// Describe implements prometheus.Collector.
func (u *upstreamActive) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

// Collect implements prometheus.Collector.
func (u *upstreamActive) Collect(ch chan<- prometheus.Metric) {
	u.b.mu.RLock()
	defer u.b.mu.RUnlock()
	for addr, up := range u.b.ups {
		ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, float64(up.active.Load()), addr)
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// request records one finished request or tcp connection.
func (m *metrics) request(route, upstream string, code int, d time.Duration, errKind string) {
	m.revs.record(route, upstream, code, d, errKind)
	if upstream == "" {
		upstream = "none"
	}
	c, o := m.series(route, upstream, code)
	c.Inc()
	o.Observe(d.Seconds())
	if errKind != "" {
		m.errors.WithLabelValues(route, upstream, errKind).Inc()
	}
}

// series returns the request counter and duration observer of a route,
// upstream and status code, from the cache when they were used before.
func (m *metrics) series(route, upstream string, code int) (prometheus.Counter, prometheus.Observer) {
	sk := seriesKey{route, upstream}
	rk := requestKey{sk, code}
	m.cacheMu.RLock()
	c, o := m.counters[rk], m.durations[sk]
	m.cacheMu.RUnlock()
	if c != nil && o != nil {
		return c, o
	}
	c = m.requests.WithLabelValues(route, upstream, strconv.Itoa(code))
	o = m.duration.WithLabelValues(route, upstream)
	m.cacheMu.Lock()
	m.counters[rk], m.durations[sk] = c, o
	m.cacheMu.Unlock()
	return c, o
}

func (m *metrics) upstreamError(route, upstream, kind string) {
	m.errors.WithLabelValues(route, upstream, kind).Inc()
}

func (m *metrics) tlsNoCert() { m.noTLSCert.Inc() }

func (m *metrics) tableInstalled(t *table.Table) {
	m.revs.install(t)
	n := 0
	for _, r := range t.Routes {
		n += len(r.Backends)
	}
	m.routes.Set(float64(len(t.Routes)))
	m.backends.Set(float64(n))
	m.rebuilds.Inc()
	m.tableRev.Set(float64(t.Rev))
	// Routes and upstreams may be gone: forget their cached series (the
	// vectors keep reporting them, as before).
	m.cacheMu.Lock()
	clear(m.counters)
	clear(m.durations)
	m.cacheMu.Unlock()
}

// connState counts open client connections of one listener.
func (m *metrics) connState(listener string) func(net.Conn, http.ConnState) {
	g := m.conns.WithLabelValues(listener)
	return func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			g.Inc()
		case http.StateClosed, http.StateHijacked:
			g.Dec()
		}
	}
}
