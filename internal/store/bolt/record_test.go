package bolt

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/internal/store"
)

func TestLogRecordRoundTrip(t *testing.T) {
	events := []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "/instances/a", Value: []byte(`{"x":1}`), CreateRev: 7, ModRev: 9}},
		{Type: store.EventDelete, KV: store.KV{Key: "/instances/b", ModRev: 9}},
		{Type: store.EventPut, KV: store.KV{Key: "/nodes/n", CreateRev: 9, ModRev: 9}}, // empty value
	}
	b := encodeLog(events)
	got, err := decodeLog(9, b, "/", nil)
	if err != nil || !reflect.DeepEqual(got, events) {
		t.Fatalf("decodeLog = %+v, %v; want %+v", got, err, events)
	}
	got, err = decodeLog(9, b, "/instances/", nil)
	if err != nil || len(got) != 2 || got[1].KV.Key != "/instances/b" {
		t.Fatalf("decodeLog under /instances/ = %+v, %v", got, err)
	}
	if _, err := decodeLog(9, b[:len(b)-1], "/", nil); err == nil || !strings.Contains(err.Error(), "revision 9") {
		t.Fatalf("truncated record: err = %v", err)
	}
	if _, err := decodeLog(9, []byte{7, 1}, "/", nil); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("unknown format: err = %v", err)
	}
}

// A store whose change log was written in the old JSON format replays it.
func TestJSONChangeLogStillReplays(t *testing.T) {
	p, r1, r2 := closedStoreWithTwoRevisions(t)
	db, err := bbolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for rev, v := range map[int64]string{r1: "v1", r2: "v2"} {
			b, _ := json.Marshal([]logEntry{{T: store.EventPut, K: "/k", V: []byte(v), C: r1}})
			if err := tx.Bucket(bucketLog).Put(u64(rev), b); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r3 := put(t, s, "/k", "v3") // a binary record after the JSON ones
	ch, err := s.Watch(context.Background(), "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"v1", "v2", "v3"} {
		e := <-ch
		if string(e.KV.Value) != want || e.KV.CreateRev != r1 || e.KV.ModRev != []int64{r1, r2, r3}[i] {
			t.Fatalf("replay %d: %+v, want value %s", i, e, want)
		}
	}
}

// FuzzDecodeLog: a corrupt change-log record is an error, never a panic,
// and what encodeLog writes decodes to the same events.
func FuzzDecodeLog(f *testing.F) {
	f.Add(encodeLog([]store.Event{{Type: store.EventPut, KV: store.KV{Key: "/a", Value: []byte("v"), CreateRev: 3}}}))
	f.Add([]byte(`[{"t":1,"k":"/a","v":"dg==","c":3}]`))
	f.Add([]byte{logFormat, 2, 2, '/', 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := decodeLog(5, b, "", nil)
		if err != nil || len(b) == 0 || b[0] != logFormat {
			return
		}
		again, err := decodeLog(5, encodeLog(events), "", nil)
		if err != nil || !reflect.DeepEqual(again, events) {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", events, again, err)
		}
	})
}
