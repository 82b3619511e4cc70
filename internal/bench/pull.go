package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/registrytest"
)

// PullOptions configure RunPull.
type PullOptions struct {
	// Size is the image's total size in bytes (default ~100 MB) spread
	// over Layers layers (default 4) of random data.
	Size   int64
	Layers int
	// Rounds per tool; the median is reported (default 3).
	Rounds int
	Out    io.Writer
}

// PullResult is RunPull's table row.
type PullResult struct {
	Bytes  int64
	Layers int
	// Berth is a cold pull into an empty image store: download, verify
	// by digest, unpack every layer into its snapshot, fsync.
	Berth time.Duration
	// Warm is berth pulling the same image again (nothing downloaded).
	Warm time.Duration
	// Skopeo is `skopeo copy` to an OCI layout dir: download and verify,
	// no unpacking.
	Skopeo time.Duration
}

// RunPull starts a docker-registry on 127.0.0.1, pushes an image of
// random data to it (untimed), then times berth's image store and
// `skopeo copy` pulling it, each into a fresh directory every round.
// Everything it makes is removed.
func RunPull(ctx context.Context, o PullOptions) (PullResult, error) {
	if o.Size <= 0 {
		o.Size = registrytest.LargeSize
	}
	if o.Layers <= 0 {
		o.Layers = 4
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		return PullResult{}, fmt.Errorf("skopeo is the reference and is not installed (apt-get install skopeo): %w", err)
	}
	reg, err := registrytest.Launch(registrytest.Options{})
	if err != nil {
		return PullResult{}, err
	}
	defer reg.Close()
	img, err := registrytest.Random(o.Size, o.Layers, 1)
	if err != nil {
		return PullResult{}, fmt.Errorf("build the benchmark image: %w", err)
	}
	ref, _, err := reg.PushImage(ctx, "bench/random:1", img)
	if err != nil {
		return PullResult{}, err
	}
	res := PullResult{Bytes: o.Size, Layers: o.Layers}
	var berth, warm, sk []time.Duration
	for i := 0; i < o.Rounds; i++ {
		cold, again, err := timeBerthPull(ctx, ref)
		if err != nil {
			return res, err
		}
		s, err := timeSkopeo(ctx, skopeo, ref)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(o.Out, "round %d: berth %s (warm %s), skopeo %s\n", i+1, cold.Round(time.Millisecond),
			again.Round(time.Millisecond), s.Round(time.Millisecond))
		berth, warm, sk = append(berth, cold), append(warm, again), append(sk, s)
	}
	res.Berth, res.Warm, res.Skopeo = median(berth), median(warm), median(sk)
	return res, nil
}

// timeBerthPull pulls ref into a fresh store twice: cold, then warm.
func timeBerthPull(ctx context.Context, ref string) (cold, warm time.Duration, err error) {
	dir, err := os.MkdirTemp("", "berth-bench-images-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	s, err := image.Open(dir, image.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	start := time.Now()
	if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
		return 0, 0, err
	}
	cold = time.Since(start)
	start = time.Now()
	if _, err := s.Pull(ctx, ref, image.PullOptions{}); err != nil {
		return 0, 0, err
	}
	return cold, time.Since(start), nil
}

// timeSkopeo copies ref into a fresh OCI layout directory.
func timeSkopeo(ctx context.Context, skopeo, ref string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "berth-bench-skopeo-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, skopeo, "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+":bench")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("skopeo copy: %v: %s", err, out)
	}
	return time.Since(start), nil
}

// PrintPullTable prints RunPull's result as a Markdown table.
func PrintPullTable(w io.Writer, r PullResult) {
	fmt.Fprintln(w, "| image | berth pull (cold) | skopeo copy → OCI dir | ratio | berth pull (warm) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d MB, %d layers | %s (%.0f MB/s) | %s | %.2f× | %s |\n", r.Bytes/1e6, r.Layers,
		r.Berth.Round(time.Millisecond), float64(r.Bytes)/1e6/r.Berth.Seconds(), r.Skopeo.Round(time.Millisecond),
		float64(r.Berth)/float64(r.Skopeo), r.Warm.Round(time.Millisecond))
}
