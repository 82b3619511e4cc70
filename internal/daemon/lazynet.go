package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/network"
)

// lazyNet is the node network of an agent whose subnet comes from the
// server: drivers get it at start, and its calls wait (bounded) until
// set gives it the real network, or fail gives the reason there is none.
type lazyNet struct {
	ready chan struct{}
	once  sync.Once
	n     network.Node
	err   error
	// wait bounds how long a call waits for the network.
	wait time.Duration
}

var _ network.Node = (*lazyNet)(nil)

func newLazyNet(wait time.Duration) *lazyNet {
	return &lazyNet{ready: make(chan struct{}), wait: wait}
}

// set makes n the network; later calls are ignored.
func (l *lazyNet) set(n network.Node) {
	l.once.Do(func() { l.n = n; close(l.ready) })
}

// fail makes every call return err; later calls are ignored.
func (l *lazyNet) fail(err error) {
	l.once.Do(func() { l.err = err; close(l.ready) })
}

func (l *lazyNet) get(ctx context.Context) (network.Node, error) {
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case <-l.ready:
		if l.err != nil {
			return nil, fmt.Errorf("node network unavailable: %w", l.err)
		}
		return l.n, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("node network not ready: this node has no subnet from the server yet")
	}
}

// Attach waits for the network, then attaches.
func (l *lazyNet) Attach(ctx context.Context, id string, ports []driver.PortBinding) (network.Attachment, error) {
	n, err := l.get(ctx)
	if err != nil {
		return network.Attachment{}, err
	}
	return n.Attach(ctx, id, ports)
}

// Get waits for the network, then looks id up.
func (l *lazyNet) Get(ctx context.Context, id string) (network.Attachment, bool, error) {
	n, err := l.get(ctx)
	if err != nil {
		return network.Attachment{}, false, err
	}
	return n.Get(ctx, id)
}

// Detach waits for the network, then detaches.
func (l *lazyNet) Detach(ctx context.Context, id string) error {
	n, err := l.get(ctx)
	if err != nil {
		return err
	}
	return n.Detach(ctx, id)
}
