package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// heartbeat writes the node object every Heartbeat interval, and after
// each beat the store took, the status changes runners could not write.
//
// A server that asks for a longer interval (a large cluster, see
// model.HeartbeatInterval) gets it; never a shorter one than configured.
func (a *Agent) heartbeat(ctx context.Context) {
	every := a.o.Heartbeat
	t := time.NewTicker(every)
	defer t.Stop()
	var b nodeBeat
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.beat(ctx, &b)
		if p, ok := a.o.Store.(heartbeatPacer); ok {
			if d := paced(a.o.Heartbeat, p.HeartbeatInterval()); d != every {
				every = d
				t.Reset(every)
				a.o.Log.Info("heartbeat interval set by the server", "every", every)
			}
		}
		if err != nil && ctx.Err() == nil {
			a.o.Log.Warn("heartbeat", "err", err)
			continue
		}
		// The store answers again: write what could not be written.
		a.mu.Lock()
		runners := make([]*runner, 0, len(a.runners))
		for _, r := range a.runners {
			runners = append(runners, r)
		}
		a.mu.Unlock()
		for _, r := range runners {
			r.retryStatus(ctx)
		}
	}
}

// paced is the interval to beat at: the configured one, or the server's
// when it asks for more than the base interval (a large cluster).
func paced(configured, server time.Duration) time.Duration {
	if server > model.BaseHeartbeat {
		return max(configured, server)
	}
	return configured
}

// heartbeatPacer is a store that relays the server's heartbeat interval
// (remote.Store).
type heartbeatPacer interface{ HeartbeatInterval() time.Duration }

// beat writes one heartbeat: the time, ready unless down, the ports in use.
func (a *Agent) beat(ctx context.Context, b *nodeBeat) error {
	inUse := a.portsInUse()
	return b.beat(ctx, a.o.Store, model.NodeKey(a.o.NodeName), func(n *model.Node) {
		n.LastHeartbeat = a.now()
		if n.Status != model.NodeDown { // the node controller lifts down
			n.Status = model.NodeReady
		}
		n.PortsInUse = inUse
	})
}

// nodeBeat remembers the node object between heartbeats, so that a beat
// is one compare-and-swap write instead of a read and a write.
//
// A beat that changes nothing but LastHeartbeat leaves the node's ModRev
// in doubt: the API server keeps such a beat in memory and drops the
// write (api nodeAuthz.nodePut, nodes.Liveness), so the node keeps its
// ModRev, while an embedded store (a single-node server) writes it. The
// beat assumes the server until a conflict shows otherwise: it remembers
// the other candidate, and a re-read that finds the node at that ModRev
// proves the guess wrong.
type nodeBeat struct {
	known   store.Object[model.Node] // as last read or written; ModRev 0: read it
	other   int64                    // the other possible ModRev of known, 0 when sure
	written bool                     // learned: the store writes beats that change nothing else
	noAlone bool                     // learned: the store never takes a beat without the node
}

// beater is a store that takes a heartbeat without the node object
// (remote.Store over an agent session): store.ErrConflict when the node
// must be written instead, errors.ErrUnsupported when it never can.
type beater interface {
	Beat(ctx context.Context, key string, modRev int64) error
}

// beat applies mutate to the node and writes it; a beat that changes
// nothing but the time goes alone to a store that takes that.
func (b *nodeBeat) beat(ctx context.Context, s store.Store, key string, mutate func(*model.Node)) error {
	if bs, ok := s.(beater); ok && !b.noAlone && b.known.ModRev != 0 && b.other == 0 {
		next := b.known.Value
		mutate(&next)
		if beatOnly(b.known.Value, next) {
			err := bs.Beat(ctx, key, b.known.ModRev)
			b.noAlone = errors.Is(err, errors.ErrUnsupported)
			if !errors.Is(err, store.ErrConflict) && !b.noAlone {
				return err
			}
		}
	}
	base := b.known
	var prev model.Node
	next, err := store.UpdateKnown(ctx, s, key, &base, func(n *model.Node) error {
		prev = *n
		mutate(n)
		return nil
	})
	if err != nil {
		return err
	}
	if b.other != 0 && base.ModRev == b.other { // re-read after a conflict: guessed wrong
		b.written = !b.written
	}
	b.known, b.other = next, 0
	if !beatOnly(prev, next.Value) || base.ModRev == next.ModRev {
		return nil
	}
	if b.written {
		b.other = base.ModRev
	} else {
		b.known.ModRev, b.other = base.ModRev, next.ModRev
	}
	return nil
}

// beatOnly reports whether next differs from prev in LastHeartbeat only.
func beatOnly(prev, next model.Node) bool {
	next.LastHeartbeat = prev.LastHeartbeat
	x, err1 := json.Marshal(prev)
	y, err2 := json.Marshal(next)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
