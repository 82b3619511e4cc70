package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Captured from Debian's wrk 4.1.0 (the last line has no newline).
const (
	wrkOK = `Running 1s test @ http://127.0.0.1:18081/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.76ms    2.33ms  20.63ms   92.45%
    Req/Sec   778.40    119.78     0.95k    70.00%
  Latency Distribution
     50%    1.98ms
     75%    2.88ms
     90%    4.38ms
     99%   15.47ms
  776 requests in 1.00s, 4.42MB read
Requests/sec:    774.02
Transfer/sec:      4.41MB`
	wrkNon2xx = `Running 1s test @ http://127.0.0.1:18081/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.78ms    8.77ms  66.03ms   88.85%
    Req/Sec     1.26k   675.39     2.56k    80.00%
  Latency Distribution
     50%    2.02ms
     75%    5.84ms
     90%   15.70ms
     99%   45.10ms
  1308 requests in 1.05s, 664.22KB read
  Non-2xx or 3xx responses: 1308
Requests/sec:   1240.04
Transfer/sec:    629.71KB`
	wrkSocketErrors = `Running 10s test @ http://127.0.0.1:42581/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   850.12us    1.20ms   1.99s    97.10%
    Req/Sec    12.34k     1.23k   15.67k    70.00%
  Latency Distribution
     50%  612.00us
     75%  901.00us
     90%    1.20ms
     99%    1.02s
  245678 requests in 10.00s, 30.12MB read
  Socket errors: connect 3, read 12, write 0, timeout 7
Requests/sec:  24567.80
Transfer/sec:      3.01MB
`
	wrkNoLatency = `Running 1s test @ http://127.0.0.1:18081/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.76ms    2.33ms  20.63ms   92.45%
    Req/Sec   778.40    119.78     0.95k    70.00%
  776 requests in 1.00s, 4.42MB read
Requests/sec:    774.02
Transfer/sec:      4.41MB`
)

func TestParseWrk(t *testing.T) {
	us := time.Microsecond
	cases := []struct {
		name    string
		out     string
		want    WrkResult
		wantErr string
	}{
		{"ok", wrkOK, WrkResult{Requests: 776, ReqPerSec: 774.02,
			P50: 1980 * us, P75: 2880 * us, P90: 4380 * us, P99: 15470 * us}, ""},
		{"non-2xx", wrkNon2xx, WrkResult{Requests: 1308, ReqPerSec: 1240.04, Non2xx: 1308,
			P50: 2020 * us, P75: 5840 * us, P90: 15700 * us, P99: 45100 * us}, ""},
		{"socket errors, µs and s", wrkSocketErrors, WrkResult{Requests: 245678, ReqPerSec: 24567.80,
			Connect: 3, Read: 12, Timeout: 7, P50: 612 * us, P75: 901 * us, P90: 1200 * us, P99: 1020 * time.Millisecond}, ""},
		{"no --latency", wrkNoLatency, WrkResult{}, "no latency distribution"},
		{"not wrk", "unable to connect to 127.0.0.1:1 Connection refused", WrkResult{}, "no Requests/sec"},
		{"bad unit", strings.Replace(wrkOK, "15.47ms", "15.47xs", 1), WrkResult{}, `unknown latency "15.47xs"`},
	}
	for _, c := range cases {
		got, err := ParseWrk(c.out)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err %v, want one containing %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
	if n := (WrkResult{Non2xx: 1, Connect: 2, Read: 3, Write: 4, Timeout: 5}).Errors(); n != 15 {
		t.Errorf("Errors() = %d, want 15", n)
	}
}

// TestNginxConfMatchesBudget: nginx gets as many workers as berth gets
// GOMAXPROCS, and every instance as an upstream.
func TestNginxConfMatchesBudget(t *testing.T) {
	dir := t.TempDir()
	path, err := writeNginxConf(dir, "127.0.0.1:18080", []int{23000, 23001}, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{"worker_processes 3;", "listen 127.0.0.1:18080;", "server 127.0.0.1:23000;", "server 127.0.0.1:23001;",
		"pid " + dir + "/nginx.pid;", "proxy_http_version 1.1;", "access_log off;"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
}

// TestPrintRouterTable: medians per proxy, the ratio of the medians and
// the round-by-round ratios.
func TestPrintRouterTable(t *testing.T) {
	ms := time.Millisecond
	berth := summarize("berth router", []WrkResult{{ReqPerSec: 900, P99: 10 * ms}, {ReqPerSec: 1000, P99: 12 * ms}, {ReqPerSec: 500, P99: 30 * ms}})
	nginx := summarize("nginx", []WrkResult{{ReqPerSec: 1000, P99: 10 * ms}, {ReqPerSec: 1000, P99: 10 * ms}, {ReqPerSec: 1100, P99: 10 * ms}})
	var b strings.Builder
	PrintRouterTable(&b, []RouterResult{berth, nginx})
	out := b.String()
	for _, want := range []string{
		"| berth router | 900 | ", "| 900 / 1000 / 500 |",
		"req/s 0.90× (goal ≥ 0.8×: met), p99 1.20× (goal ≤ 1.5×: met)",
		"req/s 0.90 / 1.00 / 0.45, median 0.90×; p99 1.00 / 1.20 / 3.00, median 1.20×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
