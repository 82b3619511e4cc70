package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/store"
)

// testConcurrentCAS increments one counter from many goroutines, half with
// raw Get+Txn compare-and-swap and half with store.Update: no update may
// be lost, and each increment is exactly one revision.
func testConcurrentCAS(t *testing.T, s store.Store) {
	type counter struct{ N int }
	c := ctx(t)
	start, err := store.PutJSON(c, s, "/counter", counter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(raw bool) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var err error
				if raw {
					err = rawIncrement(c, s)
				} else {
					_, err = store.Update(c, s, "/counter", func(c *counter) error { c.N++; return nil })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w%2 == 0)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	o, err := store.GetJSON[counter](c, s, "/counter")
	if err != nil || o.Value.N != workers*each {
		t.Fatalf("counter %d (err %v), want %d: an update was lost", o.Value.N, err, workers*each)
	}
	if r := rev(t, s); r != start+workers*each || o.ModRev != r {
		t.Fatalf("after %d increments from rev %d: Rev %d, counter ModRev %d; want both %d",
			workers*each, start, r, o.ModRev, start+workers*each)
	}
}

// rawIncrement is a compare-and-swap loop on the JSON counter without the
// typed helpers.
func rawIncrement(c context.Context, s store.Store) error {
	for {
		kv, err := s.Get(c, "/counter")
		if err != nil {
			return err
		}
		var n int
		if _, err := fmt.Sscanf(string(kv.Value), `{"N":%d}`, &n); err != nil {
			return fmt.Errorf("counter %q: %w", kv.Value, err)
		}
		_, err = s.Txn(c, store.Txn{
			Compares: []store.Compare{{Key: "/counter", ModRev: kv.ModRev}},
			Ops:      []store.Op{store.Put("/counter", []byte(fmt.Sprintf(`{"N":%d}`, n+1)))}})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

type obj struct {
	A string `json:"a"`
	N int    `json:"n"`
}

func testTypedHelpers(t *testing.T, s store.Store) {
	c := ctx(t)
	r1, err := store.PutJSON(c, s, "/t/1", obj{A: "x"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutJSON(c, s, "/t/1", obj{A: "y"}, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutJSON create twice: %v, want ErrConflict", err)
	}
	r0, err := store.PutJSON(c, s, "/t/0", obj{A: "w"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := store.GetJSON[obj](c, s, "/t/1")
	if err != nil || o.Value.A != "x" || o.ModRev != r1 {
		t.Fatalf("GetJSON = %+v, %v; want a=x at %d", o, err, r1)
	}
	if _, err := store.GetJSON[obj](c, s, "/t/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetJSON missing: %v, want ErrNotFound", err)
	}

	got, err := store.Update(c, s, "/t/1", func(o *obj) error { o.N += 5; return nil })
	if err != nil || got.A != "x" || got.N != 5 {
		t.Fatalf("Update = %+v, %v; want {x 5}", got, err)
	}
	o, _ = store.GetJSON[obj](c, s, "/t/1")
	if o.Value.N != 5 || o.ModRev != rev(t, s) {
		t.Fatalf("after Update: %+v at %d, want n=5 at the current revision %d", o.Value, o.ModRev, rev(t, s))
	}

	objs, lr, err := store.ListJSON[obj](c, s, "/t/")
	if err != nil || len(objs) != 2 || lr != rev(t, s) {
		t.Fatalf("ListJSON = %+v, %d, %v", objs, lr, err)
	}
	if objs[0].Value.A != "w" || objs[0].ModRev != r0 || objs[1].Value.A != "x" || objs[1].ModRev != o.ModRev {
		t.Fatalf("ListJSON = %+v; want /t/0 (w at %d) then /t/1 (x at %d)", objs, r0, o.ModRev)
	}
	vals, err := store.ListValues[obj](c, s, "/t/")
	if err != nil || len(vals) != 2 || vals[0].A != "w" || vals[1].N != 5 {
		t.Fatalf("ListValues = %+v, %v", vals, err)
	}

	// A value that is not JSON names its key.
	put(t, s, "/t/2", "not json")
	if _, err := store.GetJSON[obj](c, s, "/t/2"); err == nil || !strings.Contains(err.Error(), "/t/2") {
		t.Fatalf("GetJSON of a bad value: %v, want an error naming /t/2", err)
	}
	if _, _, err := store.ListJSON[obj](c, s, "/t/"); err == nil || !strings.Contains(err.Error(), "/t/2") {
		t.Fatalf("ListJSON over a bad value: %v, want an error naming /t/2", err)
	}
}

func testUpdateErrors(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := store.Update(c, s, "/u/missing", func(*obj) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := store.PutJSON(c, s, "/u/1", obj{A: "x"}, 0); err != nil {
		t.Fatal(err)
	}
	before := rev(t, s)
	got, err := store.Update(c, s, "/u/1", func(o *obj) error { o.A = "changed"; return store.ErrSkip })
	if err != nil {
		t.Fatalf("Update with ErrSkip: %v, want nil", err)
	}
	if got.A != "changed" {
		t.Fatalf("Update with ErrSkip returned %+v, want the value mutate saw", got)
	}
	boom := errors.New("boom")
	if _, err := store.Update(c, s, "/u/1", func(o *obj) error { o.A = "changed"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update with a failing mutate: %v, want its error", err)
	}
	if after := rev(t, s); after != before {
		t.Fatalf("Update with ErrSkip or an error wrote (rev %d -> %d)", before, after)
	}
	if o, _ := store.GetJSON[obj](c, s, "/u/1"); o.Value.A != "x" {
		t.Fatalf("/u/1 = %+v, want unchanged", o.Value)
	}

	// mutate runs again when the key changed under it.
	calls := 0
	got, err = store.Update(c, s, "/u/1", func(o *obj) error {
		calls++
		if calls == 1 {
			if _, err := store.PutJSON(c, s, "/u/1", obj{A: "racer"}, rev(t, s)); err != nil {
				return err
			}
		}
		o.N++
		return nil
	})
	if err != nil || calls != 2 || got.A != "racer" || got.N != 1 {
		t.Fatalf("Update under a racing write: %+v, %v after %d calls; want {racer 1} after 2", got, err, calls)
	}
}
