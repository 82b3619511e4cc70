package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/model"
)

// checkHealth probes a running workload until ctx ends, recording
// healthy/unhealthy transitions. The first probe runs as soon as the grace
// period is over; an instance turns unhealthy after Retries consecutive
// failures and healthy on the first success.
func (r *runner) checkHealth(ctx context.Context, in *model.Instance, spec *model.AppSpec, drv driver.Driver, cid string) {
	h := spec.Health
	interval, timeout, retries := h.Interval.Duration, h.Timeout.Duration, h.Retries
	if interval <= 0 {
		interval = model.DefaultHealthInterval
	}
	if timeout <= 0 {
		timeout = model.DefaultHealthTimeout
	}
	if retries <= 0 {
		retries = model.DefaultHealthRetries
	}
	if !ctxsleep.Sleep(ctx, h.GracePeriod.Duration) {
		return
	}
	state, fails := model.HealthUnknown, 0
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := probe(pctx, h, in, spec, drv, cid)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			fails = 0
			if state != model.HealthHealthy {
				state = model.HealthHealthy
				r.setStatus(ctx, func(s *model.InstanceStatus) { s.Health, s.Message = state, "" },
					r.event(in, "Healthy", "health check passed")...)
			}
		default:
			fails++
			// Before the first success, a slow starter is "unknown", not
			// unhealthy, until Retries probes have failed.
			if fails >= retries && state != model.HealthUnhealthy {
				state = model.HealthUnhealthy
				msg := err.Error()
				r.setStatus(ctx, func(s *model.InstanceStatus) { s.Health, s.Message = state, msg })
				r.a.o.Events.Warning(ctx, in, "Unhealthy", "health check failed %d times: %s", fails, msg)
			}
		}
		// Probe quickly until the first verdict so --wait is not held up
		// by a long interval.
		wait := interval
		if state == model.HealthUnknown && wait > 250*time.Millisecond {
			wait = 250 * time.Millisecond
		}
		if !ctxsleep.Sleep(ctx, wait) {
			return
		}
	}
}

// probe runs one health check.
func probe(ctx context.Context, h *model.HealthCheck, in *model.Instance, spec *model.AppSpec, drv driver.Driver, cid string) error {
	switch {
	case h.HTTP != nil:
		dial, addr, err := portDialer(in, spec, drv, cid, h.HTTP.Port)
		if err != nil {
			return err
		}
		path := h.HTTP.Path
		if path == "" {
			path = model.DefaultHTTPHealthPath
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		hc := &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }},
			// A 3xx answer is a pass; do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		return nil
	case h.TCP != nil:
		dial, _, err := portDialer(in, spec, drv, cid, h.TCP.Port)
		if err != nil {
			return err
		}
		c, err := dial(ctx)
		if err != nil {
			return fmt.Errorf("tcp connect to port %s: %v", h.TCP.Port, err)
		}
		return c.Close()
	case h.Exec != nil:
		res, err := drv.Exec(ctx, cid, h.Exec.Command)
		if err != nil {
			return fmt.Errorf("exec: %v", err)
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("exec exited %d: %s", res.ExitCode, truncate(res.Output, 200))
		}
		return nil
	}
	return nil
}

// portDialer says how to reach a named port: from inside the workload's
// network when the driver can (the published host port may be answered by
// a proxy even when nothing listens), else through the host port. addr is
// the address to name in requests.
func portDialer(in *model.Instance, spec *model.AppSpec, drv driver.Driver, cid, port string) (dial func(context.Context) (net.Conn, error), addr string, err error) {
	if inside, ok := drv.(driver.InsideDialer); ok {
		for _, p := range spec.Ports {
			if p.Name == port {
				return func(ctx context.Context) (net.Conn, error) {
					return inside.DialInside(ctx, cid, "tcp", p.ContainerPort)
				}, net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ContainerPort)), nil
			}
		}
		return nil, "", fmt.Errorf("port %q is not declared", port)
	}
	hp, ok := in.HostPorts[port]
	if !ok || hp == 0 {
		return nil, "", fmt.Errorf("port %q has no host port", port)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, addr, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
