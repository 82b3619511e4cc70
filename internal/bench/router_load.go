package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// loadTools are the external programs the router benchmark drives.
type loadTools struct{ wrk, nginx string }

// findLoadTools finds Debian's wrk and nginx, or says how to get them.
func findLoadTools() (loadTools, error) {
	var t loadTools
	var missing []string
	if p, err := exec.LookPath("wrk"); err == nil {
		t.wrk = p
	} else {
		missing = append(missing, "wrk")
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		t.nginx = p
	} else if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		t.nginx = "/usr/sbin/nginx"
	} else {
		missing = append(missing, "nginx")
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("the router benchmark needs %s: run scripts/bench-deps.sh (installs Debian's nginx and wrk)", strings.Join(missing, " and "))
	}
	return t, nil
}

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests  int64
	ReqPerSec float64
	// P50 .. P99 are wrk's latency distribution (--latency).
	P50, P75, P90, P99 time.Duration
	// Non2xx counts responses that were neither 2xx nor 3xx.
	Non2xx int64
	// Socket errors by kind.
	Connect, Read, Write, Timeout int64
}

// Errors is the number of failed requests: non-2xx/3xx plus socket errors.
func (w WrkResult) Errors() int64 {
	return w.Non2xx + w.Connect + w.Read + w.Write + w.Timeout
}

// runWrk runs wrk against http://addr/ with Host bench.test.
func runWrk(ctx context.Context, wrk string, o RouterOptions, addr string, d time.Duration) (WrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrk, "-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())), "--latency", "-H", "Host: "+benchHost, "http://"+addr+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return WrkResult{}, ctx.Err()
		}
		return WrkResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return ParseWrk(string(out))
}

// ParseWrk reads the summary printed by `wrk --latency`: Requests/sec,
// the latency distribution, request count, non-2xx responses and socket
// errors.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveRate, haveDist bool
	sc := bufio.NewScanner(strings.NewReader(out))
	inDist := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "Latency Distribution":
			inDist = true
			continue
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad Requests/sec %q", f[1])
			}
			r.ReqPerSec, haveRate = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad request count %q", f[0])
			}
			r.Requests = n
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: bad non-2xx count %q", f[4])
			}
			r.Non2xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk output: bad socket error count in %q", line)
				}
				switch f[i] {
				case "connect":
					r.Connect = n
				case "read":
					r.Read = n
				case "write":
					r.Write = n
				case "timeout":
					r.Timeout = n
				}
			}
		}
		if inDist {
			if len(f) != 2 || !strings.HasSuffix(f[0], "%") {
				inDist = false
				continue
			}
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			switch f[0] {
			case "50%":
				r.P50 = d
			case "75%":
				r.P75 = d
			case "90%":
				r.P90 = d
			case "99%":
				r.P99, haveDist = d, true
			}
		}
	}
	if !haveRate {
		return r, fmt.Errorf("wrk output has no Requests/sec line: %q", out)
	}
	if !haveDist {
		return r, errors.New("wrk output has no latency distribution (was it run with --latency?)")
	}
	return r, nil
}

// parseWrkDuration reads wrk's times: 850.00us, 1.10ms, 2.00s, 1.00m, 1.00h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				break
			}
			return time.Duration(math.Round(f * float64(u.unit))), nil
		}
	}
	return 0, fmt.Errorf("wrk output: unknown latency %q", s)
}

// nginxProc is an nginx master process run in the foreground.
type nginxProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

var nginxConf = template.Must(template.New("nginx").Parse(`# berth bench router: nginx as a reverse proxy to the same instances.
worker_processes {{.Procs}};
{{if .Root}}user root;
{{end}}pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    upstream bench {
{{range .Ports}}        server 127.0.0.1:{{.}};
{{end}}        keepalive 64;
    }
    server {
        listen {{.Addr}};
        server_name bench.test;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`))

// startNginx writes a config proxying to ports with procs workers into
// dir and runs nginx with it in the foreground, in its own process group.
func startNginx(ctx context.Context, bin, dir string, ports []int, procs int) (*nginxProc, error) {
	addr := freeAddr()
	if addr == "" {
		return nil, errors.New("no free loopback port for nginx")
	}
	conf, err := writeNginxConf(dir, addr, ports, procs)
	if err != nil {
		return nil, err
	}
	n := &nginxProc{addr: addr, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"), "-g", "daemon off;")
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	select {
	case <-n.done:
		return nil, fmt.Errorf("nginx exited at start: %s %s", tailFile(filepath.Join(dir, "nginx.out")), tailFile(filepath.Join(dir, "nginx-error.log")))
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		n.stop()
		return nil, ctx.Err()
	}
	return n, nil
}

// writeNginxConf writes dir/nginx.conf: listen on addr, procs workers,
// proxy to the instances' ports on loopback.
func writeNginxConf(dir, addr string, ports []int, procs int) (string, error) {
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return "", err
	}
	err = nginxConf.Execute(f, struct {
		Dir, Addr string
		Ports     []int
		Procs     int
		Root      bool
	}{dir, addr, ports, procs, os.Geteuid() == 0})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", conf, err)
	}
	return conf, nil
}

// stop ends nginx's master and workers (the whole process group).
func (n *nginxProc) stop() {
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
}

// memory is a process's resident set: now and peak, in bytes.
type memory struct{ rss, hwm int64 }

// readRSS reads VmRSS and VmHWM from /proc/<pid>/status.
func readRSS(pid int) memory {
	var m memory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = v << 10
		case "VmHWM:":
			m.hwm = v << 10
		}
	}
	return m
}

// readCPU is the user+system CPU time pid has used so far, from
// /proc/<pid>/stat (utime and stime, in clock ticks of 10ms).
func readCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime, stime are fields 14, 15
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// readTreeCPU sums readCPU over pid and its children (nginx's workers).
func readTreeCPU(pid int) time.Duration {
	d := readCPU(pid)
	for _, c := range children(pid) {
		d += readCPU(c)
	}
	return d
}

// readTreeRSS sums readRSS over pid and its children (nginx's workers).
func readTreeRSS(pid int) memory {
	m := readRSS(pid)
	for _, c := range children(pid) {
		cm := readRSS(c)
		m.rss += cm.rss
		m.hwm += cm.hwm
	}
	return m
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		out = append(out, child)
	}
	return out
}
