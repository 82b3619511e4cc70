package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	dockerclient "github.com/docker/docker/client"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/model"
)

// RouterOptions configure RunRouter.
type RouterOptions struct {
	// Duration of each wrk run (default 10s).
	Duration time.Duration
	// Connections and Threads are wrk's -c and -t (default 32 and 2).
	Connections, Threads int
	// Instances of busybox httpd behind both proxies (default 4).
	Instances int
	// Rounds of measurements; the order of the proxies alternates from
	// one round to the next and the median is reported (default 3).
	Rounds int
	// Procs is the CPU budget of each proxy: berth up's GOMAXPROCS and
	// nginx's worker_processes (default: this process's GOMAXPROCS, the
	// host's or the cgroup's CPU count).
	Procs int
	// Direct also measures wrk straight to one instance's host port.
	Direct bool
	// Image runs the instances (default berth-test/busybox:latest).
	Image string
	// Berth is the berth binary run as `berth up` (default: this one).
	Berth string
	// Out gets progress lines; nil means none.
	Out io.Writer
}

// RouterResult is one row of the table: one proxy's figures, medians
// over the rounds.
type RouterResult struct {
	Proxy     string
	Runs      []WrkResult
	ReqPerSec float64
	P50, P99  time.Duration
	// RSS and PeakRSS are the proxy's resident memory after the runs
	// (VmRSS, VmHWM); for berth the whole `berth up` process, for nginx
	// master plus workers. Zero when not measured.
	RSS, PeakRSS int64
	// IdleRSS is the RSS before any load (berth only).
	IdleRSS int64
	// Errors counts non-2xx/3xx responses and socket errors over all runs.
	Errors int64
	// CPUPerReq is the proxy's CPU time (user+system) per request over
	// all runs: a figure that noise from other processes on the host
	// hardly moves. Zero when not measured.
	CPUPerReq time.Duration
}

const benchHost = "bench.test"

// RunRouter starts a private `berth up` with its router on a loopback
// port, an app of Instances busybox httpd behind the route bench.test,
// and Debian's nginx as a reverse proxy to the same instances, then runs
// wrk against each (and, with Direct, one instance) for Rounds rounds.
// Everything it starts is stopped and removed, also when ctx ends.
func RunRouter(ctx context.Context, o RouterOptions) ([]RouterResult, error) {
	o.defaults()
	progress := func(format string, args ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, format+"\n", args...)
		}
	}
	tools, err := findLoadTools()
	if err != nil {
		return nil, err
	}
	if o.Berth == "" {
		if o.Berth, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the berth binary: %w (pass it in RouterOptions.Berth)", err)
		}
	}
	runID := randHex(3)
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	defer removeLabelled(dc, benchLabel+"="+runID)
	dir, err := os.MkdirTemp("", "berth-bench-router-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	b, err := startBerthUp(ctx, o.Berth, dir, runID, o.Procs)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	progress("berth up: api %s, router %s (pid %d, GOMAXPROCS=%d)", b.api, b.router, b.cmd.Process.Pid, o.Procs)
	ports, err := applyBenchApp(ctx, b.client, o, progress)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.client.DeleteApp(dctx, "", "routerbench"); err == nil {
			_, _ = b.client.WaitConverged(dctx, "", "routerbench", client.WaitOptions{Gone: true, Poll: 100 * time.Millisecond})
		}
	}()
	if err != nil {
		return nil, err
	}
	if err := waitServes(ctx, b.router, o.Instances); err != nil {
		return nil, fmt.Errorf("berth router: %w (berth's log: %s)", err, b.logTail())
	}
	ng, err := startNginx(ctx, tools.nginx, dir, ports, o.Procs)
	if err != nil {
		return nil, err
	}
	defer ng.stop()
	if err := waitServes(ctx, ng.addr, o.Instances); err != nil {
		return nil, fmt.Errorf("nginx: %w (its error log: %s)", err, tailFile(filepath.Join(dir, "nginx-error.log")))
	}
	progress("nginx: %s (pid %d, worker_processes %d), upstreams %v", ng.addr, ng.cmd.Process.Pid, o.Procs, ports)

	type target struct {
		name, addr string
		cpu        func() time.Duration
	}
	targets := []target{{"berth router", b.router, func() time.Duration { return readCPU(b.cmd.Process.Pid) }},
		{"nginx", ng.addr, func() time.Duration { return readTreeCPU(ng.cmd.Process.Pid) }}}
	if o.Direct {
		targets = append(targets, target{"direct, 1 instance (no proxy)", fmt.Sprintf("127.0.0.1:%d", ports[0]), nil})
	}
	idle := readRSS(b.cmd.Process.Pid)
	// Warm up both proxies (upstream connection pools, page cache) untimed.
	for _, t := range targets[:2] {
		if _, err := runWrk(ctx, tools.wrk, o, t.addr, 2*time.Second); err != nil {
			return nil, fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	runs := make([][]WrkResult, len(targets))
	cpu := make([]time.Duration, len(targets))
	for round := 0; round < o.Rounds; round++ {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		if o.Direct {
			order = append(order, 2)
		}
		for _, i := range order {
			var c0 time.Duration
			if targets[i].cpu != nil {
				c0 = targets[i].cpu()
			}
			res, err := runWrk(ctx, tools.wrk, o, targets[i].addr, o.Duration)
			if targets[i].cpu != nil {
				cpu[i] += targets[i].cpu() - c0
			}
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, targets[i].name, err)
			}
			runs[i] = append(runs[i], res)
			progress("  round %d %-14s %9.0f req/s  p50 %-8s p99 %-8s errors %d", round+1, targets[i].name,
				res.ReqPerSec, fmtDur(res.P50), fmtDur(res.P99), res.Errors())
		}
	}
	var out []RouterResult
	for i, t := range targets {
		r := summarize(t.name, runs[i])
		var n int64
		for _, w := range runs[i] {
			n += w.Requests
		}
		if n > 0 {
			r.CPUPerReq = cpu[i] / time.Duration(n)
		}
		switch i {
		case 0:
			m := readRSS(b.cmd.Process.Pid)
			r.RSS, r.PeakRSS, r.IdleRSS = m.rss, m.hwm, idle.rss
		case 1:
			m := readTreeRSS(ng.cmd.Process.Pid)
			r.RSS, r.PeakRSS = m.rss, m.hwm
		}
		out = append(out, r)
	}
	return out, nil
}

func (o *RouterOptions) defaults() {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Connections <= 0 {
		o.Connections = 32
	}
	if o.Threads <= 0 {
		o.Threads = 2
	}
	if o.Instances <= 0 {
		o.Instances = 4
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Procs <= 0 {
		o.Procs = runtime.GOMAXPROCS(0)
	}
	if o.Image == "" {
		o.Image = "berth-test/busybox:latest"
	}
}

// berthUp is a `berth up` child process.
type berthUp struct {
	cmd         *exec.Cmd
	done        chan struct{}
	api, router string
	client      *client.Client
	logPath     string
	waitErr     error
}

// startBerthUp runs `berth up` on loopback ports with its data dir, CLI
// context and log in dir, with GOMAXPROCS=procs, in its own process group
// (Ctrl-C reaches only the benchmark, which then stops it in order).
func startBerthUp(ctx context.Context, bin, dir, runID string, procs int) (*berthUp, error) {
	api, router := freeAddr(), freeAddr()
	if api == "" || router == "" {
		return nil, errors.New("no free loopback port")
	}
	// A window of the default range of its own, so instances of other
	// berths on this host do not take our ports.
	lo := model.DefaultPortRange[0] + rand.IntN(120)*100
	b := &berthUp{api: api, router: router, done: make(chan struct{}), logPath: filepath.Join(dir, "berth.log")}
	logf, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	b.cmd = exec.Command(bin, "up", "--data-dir", filepath.Join(dir, "data"), "--listen", api,
		"--node-name", "berth-bench-"+runID, "--workload-label", benchLabel+"="+runID,
		"--router-listen", router, "--no-native", "--no-dns", "--log-level", "warn",
		"--port-range", fmt.Sprintf("%d-%d", lo, lo+99))
	b.cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(dir, "config.json"), fmt.Sprintf("GOMAXPROCS=%d", procs))
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s up: %w", bin, err)
	}
	go func() { b.waitErr = b.cmd.Wait(); close(b.done) }()
	tokenPath := filepath.Join(dir, "data", "admin.token")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if tok, err := os.ReadFile(tokenPath); err == nil && len(tok) > 0 {
			c := client.New("http://"+api, strings.TrimSpace(string(tok)))
			vctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := c.Version(vctx)
			cancel()
			if err == nil {
				b.client = c
				return b, nil
			}
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("berth up exited (%v): %s", b.waitErr, b.logTail())
		case <-ctx.Done():
			b.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("berth up did not answer on %s within 30s: %s", api, b.logTail())
		}
	}
}

// stop sends SIGTERM and waits (SIGKILL after 15s).
func (b *berthUp) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

func (b *berthUp) logTail() string { return tailFile(b.logPath) }

// applyBenchApp applies the app behind route bench.test, waits until all
// instances are ready and returns their host ports.
func applyBenchApp(ctx context.Context, c *client.Client, o RouterOptions, progress func(string, ...any)) ([]int, error) {
	spec := fmt.Sprintf(`name: routerbench
image: %s
command: ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
instances: %d
resources: {memory: 64Mi}
ports: [{name: http, containerPort: 8080}]
health: {http: {port: http, path: /}, interval: 1s}
routes: [{host: %s, path: /, port: http}]
stopGracePeriod: 1s
`, o.Image, o.Instances, benchHost)
	start := time.Now()
	// The agent registers the node shortly after the API answers; apply
	// before that and the scheduler says "no nodes registered".
	for {
		if nodes, err := c.Nodes(ctx); err == nil && len(nodes) > 0 {
			break
		}
		if time.Since(start) > time.Minute {
			return nil, errors.New("the private berth's node did not register within a minute")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := c.Apply(ctx, "", []byte(spec)); err != nil {
		return nil, fmt.Errorf("apply the benchmark app: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var why string
	_, err := c.WaitConverged(wctx, "", "routerbench", client.WaitOptions{Poll: 100 * time.Millisecond,
		Progress: func(v model.AppView) {
			if strings.HasPrefix(v.Status.Message, "unschedulable") {
				why = v.Status.Message
				cancel()
			}
		}})
	if why != "" {
		return nil, fmt.Errorf("%s (use fewer --instances)", why)
	}
	if err != nil {
		return nil, fmt.Errorf("waiting for %d instances of %s to be ready: %w (is the image built? scripts/test-image.sh)", o.Instances, o.Image, err)
	}
	insts, err := c.Instances(ctx, "", "routerbench")
	if err != nil {
		return nil, err
	}
	var ports []int
	for _, in := range insts {
		if in.Desired == model.DesiredRun && in.HostPorts["http"] > 0 {
			ports = append(ports, in.HostPorts["http"])
		}
	}
	sort.Ints(ports)
	if len(ports) != o.Instances {
		return nil, fmt.Errorf("want %d instances with a host port, found %d", o.Instances, len(ports))
	}
	progress("%d instances ready in %s, host ports %v", len(ports), time.Since(start).Round(time.Millisecond), ports)
	return ports, nil
}

// waitServes polls http://addr/ with Host bench.test until it has seen n
// different instances answer 200 (each serves its hostname), for 60s.
func waitServes(ctx context.Context, addr string, n int) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		req.Host = benchHost
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				seen[strings.TrimSpace(string(body))] = true
				if len(seen) >= n {
					return nil
				}
				continue
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("http://%s/ (Host %s) did not serve %d instances within 60s (saw %d; last: %s)", addr, benchHost, n, len(seen), last)
}

func summarize(name string, runs []WrkResult) RouterResult {
	r := RouterResult{Proxy: name, Runs: runs}
	var rps []float64
	var p50, p99 []time.Duration
	for _, w := range runs {
		rps = append(rps, w.ReqPerSec)
		p50, p99 = append(p50, w.P50), append(p99, w.P99)
		r.Errors += w.Errors()
	}
	if len(runs) == 0 {
		return r
	}
	sort.Float64s(rps)
	r.ReqPerSec, r.P50, r.P99 = rps[len(rps)/2], median(p50), median(p99)
	return r
}

// PrintRouterTable writes the results as a Markdown table, then the
// berth router's ratios against nginx (the first two rows).
func PrintRouterTable(w io.Writer, rs []RouterResult) {
	fmt.Fprintln(w, "| proxy | req/s | p50 | p99 | CPU/request | RSS (peak) | req/s per round | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range rs {
		rss := "—"
		if r.RSS > 0 {
			rss = fmt.Sprintf("%s (%s)", mib(r.RSS), mib(r.PeakRSS))
			if r.IdleRSS > 0 {
				rss += fmt.Sprintf(", idle %s", mib(r.IdleRSS))
			}
		}
		var per []string
		for _, run := range r.Runs {
			per = append(per, fmt.Sprintf("%.0f", run.ReqPerSec))
		}
		cpu := "—"
		if r.CPUPerReq > 0 {
			cpu = fmtDur(r.CPUPerReq)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %d |\n", r.Proxy, r.ReqPerSec, fmtDur(r.P50), fmtDur(r.P99),
			cpu, rss, strings.Join(per, " / "), r.Errors)
	}
	if len(rs) >= 2 && rs[1].ReqPerSec > 0 && rs[1].P99 > 0 {
		rps := rs[0].ReqPerSec / rs[1].ReqPerSec
		p99 := float64(rs[0].P99) / float64(rs[1].P99)
		fmt.Fprintf(w, "\nberth router vs nginx: req/s %.2f× (goal ≥ 0.8×: %s), p99 %.2f× (goal ≤ 1.5×: %s)\n",
			rps, met(rps >= 0.8), p99, met(p99 <= 1.5))
		if rr, pr, ok := pairedRatios(rs[0].Runs, rs[1].Runs); ok {
			fmt.Fprintf(w, "Per round (the two proxies back to back, so both see the same host load): req/s %s, median %.2f×; p99 %s, median %.2f×\n",
				joinRatios(rr), medianFloat(rr), joinRatios(pr), medianFloat(pr))
		}
		fmt.Fprintln(w, "RSS of berth is the whole `berth up` process (API, store, controllers, agent, router).")
	}
}

// pairedRatios divides the runs of a by those of b round by round: req/s
// and p99. ok is false when the rounds do not pair up.
func pairedRatios(a, b []WrkResult) (rps, p99 []float64, ok bool) {
	if len(a) == 0 || len(a) != len(b) {
		return nil, nil, false
	}
	for i := range a {
		if b[i].ReqPerSec <= 0 || b[i].P99 <= 0 {
			return nil, nil, false
		}
		rps = append(rps, a[i].ReqPerSec/b[i].ReqPerSec)
		p99 = append(p99, float64(a[i].P99)/float64(b[i].P99))
	}
	return rps, p99, true
}

func joinRatios(rs []float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(s, " / ")
}

func medianFloat(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer l.Close()
	return l.Addr().String()
}

// tailFile returns the last lines of a log file, for error messages.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "…" + s[len(s)-1500:]
	}
	if s == "" {
		return "(empty log)"
	}
	return s
}
