package bench

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/client"
	"github.com/berth-dev/berth/internal/ctxsleep"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/events"
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/store/remote"
)

// ClusterOptions configure RunCluster.
type ClusterOptions struct {
	// Nodes is the number of simulated agents.
	Nodes int
	// Instances is the total instance count, spread over apps of
	// PerApp instances each.
	Instances int
	PerApp    int
	// ApplyClients is how many clients apply the apps at once (default
	// 8, a few users; as many as there are apps submits them all at
	// once, as a whole environment deployed in one go).
	ApplyClients int
	// Pprof, if set, is the loopback address the server serves
	// net/http/pprof on (through PprofEnv); AgentsPprof the same for the
	// simulated agents' process.
	Pprof, AgentsPprof string
	// AgentsNice is the simulated agents' process's nice value (0: the
	// server's priority).
	AgentsNice int
	// ServerMemoryLimit, if set, is the server's --memory-limit (Go's
	// soft memory limit, e.g. 215MiB).
	ServerMemoryLimit string
	// Settle is how long the joined fleet idles before the apps are
	// applied; IdleServerCPU is the server's CPU use over it.
	Settle time.Duration
	Out    io.Writer
}

// benchClusterCIDR holds 65,536 node subnets of the default size.
const benchClusterCIDR = "10.0.0.0/8"

// PprofEnv names the environment variable that makes a berth process
// serve net/http/pprof on its value's address.
const PprofEnv = "BERTH_BENCH_PPROF"

// ClusterResult is what RunCluster measured.
type ClusterResult struct {
	Nodes, Instances, ApplyClients int
	// JoinAll is the time until every agent had joined and was ready.
	JoinAll time.Duration
	// ApplyAll is the time the apps took to apply (ApplyClients clients);
	// ApplyP50 and ApplyMax the latency of one apply.
	ApplyAll, ApplyP50, ApplyMax time.Duration
	// PlacementsPerSec: instances placed per second from the first
	// apply until the benchmark's watch had seen all placed.
	PlacementsPerSec float64
	// CommittedPerSec: the same until the last placement was committed,
	// by the server's clock (the Scheduled event in its Txn): the rate
	// without the benchmark's own watch lag.
	CommittedPerSec float64
	// SubmitToRunning percentiles: app applied → instance running.
	P50, P99, Max time.Duration
	// ServerRSS is the server process's resident memory at the end;
	// ServerPeakRSS its high-water mark (VmHWM); ServerFileRSS the part
	// of ServerRSS that is mapped file pages (the store's mmap, RssFile):
	// page cache the kernel can drop, not the process's own memory.
	ServerRSS, ServerPeakRSS, ServerFileRSS int64
	// ServerCPU is the CPU time (user+system) the server used in all,
	// a figure less sensitive to other load on the machine than rates.
	ServerCPU time.Duration
	// AgentsCPU is the CPU time the simulated agents' process used.
	AgentsCPU time.Duration
	// IdleServerCPU is the share of a core the server used while the
	// joined fleet idled for ClusterOptions.Settle (heartbeats, sessions).
	IdleServerCPU float64
	// StoreBytes is the size of the server's store file.
	StoreBytes int64
}

// RunCluster starts a real `berth server` (this binary, as a child
// process on loopback) and Nodes simulated agents in this process: each
// joins with a token, talks mutual TLS through the remote store and runs
// instances with the mock driver — the real agent protocol, no runtime.
// It applies Instances instances and measures placement and start.
func RunCluster(ctx context.Context, o ClusterOptions) (ClusterResult, error) {
	if o.PerApp <= 0 {
		o.PerApp = 100
	}
	if o.ApplyClients <= 0 {
		o.ApplyClients = defaultApplyClients
	}
	res := ClusterResult{Nodes: o.Nodes, Instances: o.Instances, ApplyClients: o.ApplyClients}
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := os.MkdirTemp("", "berth-bench-cluster-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	listen := l.Addr().String()
	l.Close()
	ctxFile := filepath.Join(dir, "context.json")
	srv := exec.Command(self, "server", "--data-dir", filepath.Join(dir, "server"), "--listen", listen, "--log-level", "error",
		"--cluster-cidr", benchClusterCIDR, // a subnet for each of thousands of nodes
		"--memory-limit", o.ServerMemoryLimit)
	srv.Env = append(os.Environ(), "BERTH_CONFIG="+ctxFile)
	if o.Pprof != "" {
		srv.Env = append(srv.Env, PprofEnv+"="+o.Pprof)
	}
	srv.Stderr = o.Out
	// The server dies with the benchmark, even if it is killed.
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	c, cc, err := waitServer(ctx, ctxFile)
	if err != nil {
		return res, err
	}
	url := cc.Server
	tok, err := c.CreateToken(ctx, "1h", "bench")
	if err != nil {
		return res, err
	}
	// The simulated agents run in a child process of their own, as real
	// agents run on hosts of their own: the benchmark's clients (apply,
	// the admin watch) do not share a Go scheduler with 5,000 agents.
	// At a lower CPU priority (AgentsNice) they take what the server
	// leaves, as if on other machines, instead of half its cores.
	agents := exec.Command("nice", "-n", strconv.Itoa(o.AgentsNice), self, "bench", "cluster", "agents", "--server", url,
		"--join-token", tok.Token, "--nodes", strconv.Itoa(o.Nodes), "--dir", filepath.Join(dir, "agents"))
	agents.Stderr = o.Out
	agents.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if o.AgentsPprof != "" {
		agents.Env = append(os.Environ(), PprofEnv+"="+o.AgentsPprof)
	}
	if err := agents.Start(); err != nil {
		return res, err
	}
	defer func() { _ = agents.Process.Signal(syscall.SIGTERM); _ = agents.Wait() }()
	t0 := time.Now()
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		nodes, err := c.Nodes(ctx)
		ready := 0
		for _, n := range nodes {
			if n.Status == model.NodeReady {
				ready++
			}
		}
		fmt.Fprintf(o.Out, "\rnodes ready: %d/%d   ", ready, o.Nodes)
		return ready == o.Nodes, err
	}); err != nil {
		return res, err
	}
	res.JoinAll = time.Since(t0)
	fmt.Fprintln(o.Out)
	if o.Settle > 0 {
		cpu0 := cpuTime(srv.Process.Pid)
		if !ctxsleep.Sleep(ctx, o.Settle) {
			return res, ctx.Err()
		}
		res.IdleServerCPU = float64(cpuTime(srv.Process.Pid)-cpu0) / float64(o.Settle)
	}

	// The admin watches every instance change: placement and start are
	// timed as they happen, without polling the server.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cc.CA))
	admin := remote.New(remote.Options{Server: url, Token: cc.Token, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer admin.Close()
	from, err := admin.Rev(ctx)
	if err != nil {
		return res, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events, err := admin.Watch(wctx, model.PrefixInstances, from)
	if err != nil {
		return res, err
	}
	tr := &tracker{submitted: map[string]time.Time{}, placed: map[string]bool{}, running: map[string]bool{}}
	apps := (o.Instances + o.PerApp - 1) / o.PerApp
	start := time.Now()
	if err := applyApps(ctx, c, o, apps, tr); err != nil {
		return res, err
	}
	res.ApplyAll = time.Since(start)
	if err := tr.follow(wctx, admin, events, o, 30*time.Minute); err != nil {
		return res, err
	}
	fmt.Fprintln(o.Out)
	res.PlacementsPerSec = float64(o.Instances) / tr.lastPlaced.Sub(start).Seconds()
	if last, err := lastScheduled(ctx, admin); err == nil && last.After(start) {
		res.CommittedPerSec = float64(o.Instances) / last.Sub(start).Seconds()
	} else if err != nil {
		fmt.Fprintf(o.Out, "reading Scheduled events: %v\n", err)
	}
	lat := tr.lat
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50, res.P99, res.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	if ap := tr.applies; len(ap) > 0 {
		slices.Sort(ap)
		res.ApplyP50, res.ApplyMax = ap[len(ap)/2], ap[len(ap)-1]
	}
	res.ServerRSS = procStatus(srv.Process.Pid, "VmRSS")
	res.ServerPeakRSS = procStatus(srv.Process.Pid, "VmHWM")
	res.ServerFileRSS = procStatus(srv.Process.Pid, "RssFile")
	res.ServerCPU = cpuTime(srv.Process.Pid)
	res.AgentsCPU = cpuTime(agents.Process.Pid)
	if st, err := os.Stat(filepath.Join(dir, "server", "berth.db")); err == nil {
		res.StoreBytes = st.Size()
	}
	return res, nil
}

// SimAgentsOptions configure RunSimulatedAgents.
type SimAgentsOptions struct {
	Server, JoinToken string
	Nodes             int
	// Dir holds the agents' data dirs.
	Dir string
	Out io.Writer
}

// RunSimulatedAgents runs Nodes agents named sim-NNNNN until ctx ends:
// each joins with the token, talks mutual TLS over an agent session and
// runs instances with the mock driver.
func RunSimulatedAgents(ctx context.Context, o SimAgentsOptions) {
	var wg sync.WaitGroup
	defer wg.Wait()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < o.Nodes && ctx.Err() == nil; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// A join that times out on a busy machine is retried, as an
			// operator would, under a new name: the timed-out join may
			// have been granted the old one.
			for try := 1; try <= agentTries && ctx.Err() == nil; try++ {
				name := fmt.Sprintf("sim-%05d", i)
				if try > 1 {
					name += fmt.Sprintf("-r%d", try)
				}
				err := daemon.RunAgent(ctx, daemon.AgentOptions{Server: o.Server, JoinToken: o.JoinToken, NodeName: name,
					DataDir: filepath.Join(o.Dir, name), NoDocker: true, Native: daemon.NativeOptions{Disabled: true},
					MockImages: []string{"bench/mock"}, Address: "127.0.0.1", Log: quiet, Simulated: true})
				if err == nil || ctx.Err() != nil {
					return
				}
				fmt.Fprintf(o.Out, "agent %d (try %d of %d): %v\n", i, try, agentTries, err)
				ctxsleep.Sleep(ctx, time.Duration(try)*time.Second)
			}
		}(i)
		if i%50 == 49 {
			ctxsleep.Sleep(ctx, 50*time.Millisecond) // a fleet joins over time, not in one instant
		}
	}
	<-ctx.Done()
}

// tracker times every instance from its app's submission to placement
// and to running, from the admin's watch.
type tracker struct {
	mu         sync.Mutex
	submitted  map[string]time.Time // app → when its apply was sent
	placed     map[string]bool      // instance keys
	running    map[string]bool
	lat        []time.Duration // submit → running
	applies    []time.Duration // each apply's latency
	lastPlaced time.Time
}

func (tr *tracker) applied(took time.Duration) {
	tr.mu.Lock()
	tr.applies = append(tr.applies, took)
	tr.mu.Unlock()
}

func (tr *tracker) submit(app string) {
	tr.mu.Lock()
	tr.submitted[app] = time.Now()
	tr.mu.Unlock()
}

// follow consumes instance events until every instance runs, printing
// progress every second.
//
// A watch that ends (the benchmark fell further behind than the server's
// change log reaches) is replaced by a listing, timed at once, and a new
// watch from it.
func (tr *tracker) follow(ctx context.Context, st store.Store, events <-chan store.Event, o ClusterOptions, timeout time.Duration) error {
	relists := 0
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for len(tr.running) < o.Instances {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("gave up after %s: %d placed, %d running of %d", timeout, len(tr.placed), len(tr.running), o.Instances)
		case <-tick.C:
			fmt.Fprintf(o.Out, "\rplaced %d, running %d of %d   ", len(tr.placed), len(tr.running), o.Instances)
		case ev, ok := <-events:
			if !ok {
				if relists++; relists > maxRelists {
					return fmt.Errorf("the instance watch ended %d times", relists)
				}
				kvs, rev, err := st.List(ctx, model.PrefixInstances)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					tr.see(kv, time.Now())
				}
				if events, err = st.Watch(ctx, model.PrefixInstances, rev); err != nil {
					return err
				}
				continue
			}
			if ev.Type == store.EventPut {
				tr.see(ev.KV, time.Now())
			}
		}
	}
	fmt.Fprintf(o.Out, "\rplaced %d, running %d of %d   ", len(tr.placed), len(tr.running), o.Instances)
	return nil
}

func (tr *tracker) see(kv store.KV, at time.Time) {
	var in model.Instance
	if json.Unmarshal(kv.Value, &in) != nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if in.Node != "" && !tr.placed[kv.Key] {
		tr.placed[kv.Key] = true
		tr.lastPlaced = at
	}
	if in.Status.State == model.StateRunning && !tr.running[kv.Key] {
		tr.running[kv.Key] = true
		tr.lat = append(tr.lat, at.Sub(tr.submitted[in.App]))
	}
}

// lastScheduled is the time of the latest Scheduled event: each is
// written in the Txn of the placements it explains, stamped by the
// server just before the commit.
func lastScheduled(ctx context.Context, st store.Store) (time.Time, error) {
	evs, _, err := events.List(ctx, st, events.Filter{}, 0)
	var last time.Time
	for _, e := range evs {
		if e.Reason == "Scheduled" && e.Time.After(last) {
			last = e.Time
		}
	}
	return last, err
}

// maxRelists bounds how often the benchmark's own watch is re-listed.
const maxRelists = 20

// agentTries bounds how often a simulated agent is started.
const agentTries = 5

// defaultApplyClients is how many clients apply apps at once by default,
// as a few users do.
const defaultApplyClients = 8

// applyApps applies the benchmark's apps from o.ApplyClients clients.
func applyApps(ctx context.Context, c *client.Client, o ClusterOptions, apps int, tr *tracker) error {
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < o.ApplyClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				n := min(o.PerApp, o.Instances-a*o.PerApp)
				name := fmt.Sprintf("bench-%04d", a)
				spec := fmt.Sprintf("name: %s\ndriver: mock\nimage: bench/mock\ninstances: %d\nresources: {cpu: 0.01, memory: 6Mi}\n", name, n)
				tr.submit(name)
				t0 := time.Now()
				_, err := c.Apply(ctx, "", []byte(spec))
				tr.applied(time.Since(t0))
				if err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, fmt.Errorf("apply %s: %w", name, err))
					mu.Unlock()
				}
			}
		}()
	}
	for a := 0; a < apps && ctx.Err() == nil; a++ {
		next <- a
	}
	close(next)
	wg.Wait()
	return cmp.Or(firstErr, ctx.Err())
}

// serverContext is what the server writes for the CLI.
type serverContext struct{ Server, Token, CA string }

func waitServer(ctx context.Context, ctxFile string) (*client.Client, serverContext, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if b, err := os.ReadFile(ctxFile); err == nil {
			var cc serverContext
			if json.Unmarshal(b, &cc) == nil && cc.CA != "" {
				c, err := client.NewTLS(cc.Server, cc.Token, []byte(cc.CA))
				if err != nil {
					return nil, cc, err
				}
				if _, err := c.Version(ctx); err == nil {
					return c, cc, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, serverContext{}, fmt.Errorf("berth server did not come up")
}

// cpuTime is pid's user+system CPU time so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces): utime and stime
	// are the 14th and 15th fields in clock ticks (100 per second).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStatus reads a size field (VmRSS, VmHWM) of pid's status in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// PrintClusterTable prints r as a table.
func PrintClusterTable(w io.Writer, r ClusterResult) {
	fmt.Fprintf(w, "nodes\tinstances\tapply clients\tjoin all\tapply all\tplacements/s (committed)\tsubmit→running p50\tp99\tmax\tserver RSS (peak; store mmap)\tserver CPU\tstore\n")
	fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%s\t%.0f (%.0f)\t%s\t%s\t%s\t%.0f MiB (%.0f; %.0f)\t%s\t%.1f MiB\n", r.Nodes, r.Instances, r.ApplyClients, r.JoinAll.Round(time.Millisecond), r.ApplyAll.Round(time.Millisecond),
		r.PlacementsPerSec, r.CommittedPerSec, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond),
		float64(r.ServerRSS)/(1<<20), float64(r.ServerPeakRSS)/(1<<20), float64(r.ServerFileRSS)/(1<<20), r.ServerCPU.Round(100*time.Millisecond), float64(r.StoreBytes)/(1<<20))
	fmt.Fprintf(w, "one apply: p50 %s, max %s; simulated agents' CPU: %s\n", r.ApplyP50.Round(time.Millisecond),
		r.ApplyMax.Round(time.Millisecond), r.AgentsCPU.Round(100*time.Millisecond))
	if r.IdleServerCPU > 0 {
		fmt.Fprintf(w, "server CPU while the joined fleet idled: %.0f%% of a core\n", 100*r.IdleServerCPU)
	}
}

// poll calls cond every second until it holds, ctx ends or timeout.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok, _ := cond(); ok {
			return nil
		}
		if !ctxsleep.Sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("gave up after %s", timeout)
}
