package model

import (
	"testing"
	"time"
)

func TestHeartbeatIntervalScalesPast2000Nodes(t *testing.T) {
	for _, c := range []struct {
		nodes int
		want  time.Duration
	}{{0, 2 * time.Second}, {3, 2 * time.Second}, {2000, 2 * time.Second}, {3000, 3 * time.Second}, {5000, 5 * time.Second}, {20000, 20 * time.Second}} {
		if got := HeartbeatInterval(c.nodes); got != c.want {
			t.Errorf("HeartbeatInterval(%d) = %s, want %s", c.nodes, got, c.want)
		}
	}
	if f := HeartbeatStretch(5000); f != 2.5 {
		t.Errorf("HeartbeatStretch(5000) = %v, want 2.5", f)
	}
}
