//go:build linux

package oci

import (
	"context"
	"testing"
	"time"
)

// BenchmarkStart measures Start until running through the driver
// ("berth-ms") and the runtime running the same bundle by hand
// ("byhand-ms"), per runtime.
func BenchmarkStart(b *testing.B) {
	for _, name := range KnownRuntimes {
		b.Run(name, func(b *testing.B) {
			benchStart(b, newTestDriver(b, name))
		})
	}
}

// BenchmarkStartCNI is BenchmarkStart with the real image store (an
// overlayfs mount of a pulled image) and a CNI network: berth's figure
// includes the attach (veth, address, iptables), while the by-hand run
// reuses the namespace already made.
func BenchmarkStartCNI(b *testing.B) {
	images, ref := newTestImages(b)
	for _, name := range KnownRuntimes {
		b.Run(name, func(b *testing.B) {
			d := newDriverWith(b, Options{RootFS: images, Network: newTestNetwork(b),
				Runtimes: map[string]string{name: requireRuntime(b, name)}})
			benchStartImage(b, d, ref)
		})
	}
}

// benchStart runs BenchStart b.N times on the local busybox rootfs and
// reports the mean of both figures.
func benchStart(b *testing.B, d *Driver) { benchStartImage(b, d, testImage) }

func benchStartImage(b *testing.B, d *Driver, image string) {
	var berth, byHand time.Duration
	for i := 0; i < b.N; i++ {
		bd, hd, err := BenchStart(context.Background(), d, BenchOptions{Image: image, Labels: testLabels})
		if err != nil {
			b.Fatal(err)
		}
		berth += bd
		byHand += hd
	}
	b.ReportMetric(float64(berth.Microseconds())/1000/float64(b.N), "berth-ms/op")
	b.ReportMetric(float64(byHand.Microseconds())/1000/float64(b.N), "byhand-ms/op")
}
