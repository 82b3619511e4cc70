package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/driver/oci"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/registrytest"
)

// StartOptions configure RunStart.
type StartOptions struct {
	// Runtimes to measure (default runc, crun, runsc — those installed).
	Runtimes []string
	// Rounds per runtime; the median is reported (default 5).
	Rounds int
	Out    io.Writer
}

// StartResult is one row of RunStart's table.
type StartResult struct {
	Runtime string
	// Berth is driver oci's Start until running: overlay rootfs, bundle,
	// shim, `<runtime> run`.
	Berth time.Duration
	// ByHand is `<runtime> run --detach` of the same bundle.
	ByHand time.Duration
}

// RunStart measures the start latency of a busybox container under each
// OCI runtime, through berth's driver and by hand on the same bundle. The
// image comes from a docker-registry on 127.0.0.1 and is pulled untimed.
// Everything it makes is removed.
func RunStart(ctx context.Context, o StartOptions) ([]StartResult, error) {
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	reg, err := registrytest.Launch(registrytest.Options{})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	img, err := registrytest.Busybox()
	if err != nil {
		return nil, err
	}
	ref, _, err := reg.PushImage(ctx, "bench/busybox:1", img)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-oci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	store, err := image.Open(dir+"/images", image.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	d, err := oci.New(oci.Options{StateDir: dir + "/oci", RootFS: store, Node: "berth-bench"})
	if err != nil {
		return nil, err
	}
	defer unmountBelow(dir) // runsc's null network namespace
	runtimes := o.Runtimes
	if len(runtimes) == 0 {
		runtimes = d.Runtimes()
	}
	var out []StartResult
	for _, rt := range runtimes {
		var berth, byHand []time.Duration
		for i := 0; i < o.Rounds; i++ {
			b, h, err := oci.BenchStart(ctx, d, oci.BenchOptions{Runtime: rt, Image: ref,
				Labels: map[string]string{"berth.bench": "1"}})
			if err != nil {
				return out, fmt.Errorf("%s: %w", rt, err)
			}
			fmt.Fprintf(o.Out, "%s round %d: berth %s, by hand %s\n", rt, i+1, b.Round(time.Millisecond), h.Round(time.Millisecond))
			berth, byHand = append(berth, b), append(byHand, h)
		}
		out = append(out, StartResult{Runtime: rt, Berth: median(berth), ByHand: median(byHand)})
	}
	return out, nil
}

// PrintStartTable prints RunStart's results as a Markdown table.
func PrintStartTable(w io.Writer, rs []StartResult) {
	fmt.Fprintln(w, "| runtime | berth driver oci: start → running | runtime run --detach by hand | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× |\n", r.Runtime, r.Berth.Round(time.Millisecond),
			r.ByHand.Round(time.Millisecond), float64(r.Berth)/float64(r.ByHand))
	}
}
