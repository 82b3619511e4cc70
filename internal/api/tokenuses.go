package api

import (
	"context"
	"sync"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// tokenUses counts joins into their tokens' records (JoinToken.Uses).
// A fleet joining with one token would otherwise race compare-and-swaps
// on one key, every loser re-reading and retrying (at 5,000 agents, GBs
// of garbage and a storm of commits). Here one write per token is in
// flight at a time, and the joins that arrive meanwhile are counted
// together by the next one. A join returns once its count is stored.
type tokenUses struct {
	st store.Store

	mu     sync.Mutex
	tokens map[string]*tokenWrites // by token key, while writes are due
}

// tokenWrites is one token's writer: next collects the joins that the
// following write counts.
type tokenWrites struct{ next *useBatch }

// useBatch is the joins one write counts; done closes once it is stored,
// with err set.
type useBatch struct {
	n    int
	done chan struct{}
	err  error
}

func newTokenUses(st store.Store) *tokenUses {
	return &tokenUses{st: st, tokens: map[string]*tokenWrites{}}
}

// add counts one use of the token at key and waits until it is stored
// (or ctx ends).
func (u *tokenUses) add(ctx context.Context, key string) error {
	u.mu.Lock()
	tw, running := u.tokens[key]
	if !running {
		tw = &tokenWrites{}
		u.tokens[key] = tw
	}
	if tw.next == nil {
		tw.next = &useBatch{done: make(chan struct{})}
	}
	b := tw.next
	b.n++
	u.mu.Unlock()
	if !running {
		go u.run(key, tw)
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes tw's batches one after the other until none is left.
func (u *tokenUses) run(key string, tw *tokenWrites) {
	for {
		u.mu.Lock()
		b := tw.next
		tw.next = nil
		if b == nil {
			delete(u.tokens, key)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
		_, b.err = store.Update(context.Background(), u.st, key, func(t *model.JoinToken) error {
			t.Uses += b.n
			return nil
		})
		close(b.done)
	}
}
