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

// benchStart runs BenchStart b.N times and reports the mean of both
// figures.
func benchStart(b *testing.B, d *Driver) {
	var berth, byHand time.Duration
	for i := 0; i < b.N; i++ {
		bd, hd, err := BenchStart(context.Background(), d, BenchOptions{Image: testImage, Labels: testLabels})
		if err != nil {
			b.Fatal(err)
		}
		berth += bd
		byHand += hd
	}
	b.ReportMetric(float64(berth.Microseconds())/1000/float64(b.N), "berth-ms/op")
	b.ReportMetric(float64(byHand.Microseconds())/1000/float64(b.N), "byhand-ms/op")
}
