package remote

import (
	"fmt"
	"testing"

	"github.com/berth-dev/berth/internal/store"
)

// A stream that broke inside a revision resumes from the revision
// before it: the replay's events of that revision already forwarded are
// skipped, the rest are forwarded once.
func TestStreamPosResumesInsideARevision(t *testing.T) {
	ev := func(rev int64, key string) store.Event {
		return store.Event{Type: store.EventPut, KV: store.KV{Key: key, ModRev: rev}}
	}
	pos := &streamPos{done: 3}
	var fwd []string
	feed := func(evs ...store.Event) {
		for _, e := range evs {
			if !pos.seen(e) {
				fwd = append(fwd, fmt.Sprintf("%s@%d", e.KV.Key, e.KV.ModRev))
			}
		}
	}
	feed(ev(4, "a"), ev(5, "a"), ev(5, "b"))
	pos.complete(5 - 1) // a progress line for revision 5 proves only 4 complete
	if pos.done != 4 {
		t.Fatalf("resume after %d, want 4", pos.done)
	}
	// The stream broke; the next one replays revision 5 whole.
	feed(ev(5, "a"), ev(5, "b"), ev(5, "c"), ev(6, "d"))
	// And breaks again after revision 6 began: 5 is complete now.
	if pos.done != 5 {
		t.Fatalf("resume after %d, want 5", pos.done)
	}
	feed(ev(6, "d"), ev(7, "e"))
	want := "[a@4 a@5 b@5 c@5 d@6 e@7]"
	if got := fmt.Sprint(fwd); got != want {
		t.Fatalf("forwarded %s, want %s", got, want)
	}
}
