package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/berth-dev/berth/internal/store"
)

// A record in the kv bucket is CreateRev and ModRev (8 bytes each, big
// endian) followed by the value, so reads decode without JSON.
const recordHeader = 16

func encodeRecord(create, mod int64, value []byte) []byte {
	b := make([]byte, recordHeader+len(value))
	binary.BigEndian.PutUint64(b[0:8], uint64(create))
	binary.BigEndian.PutUint64(b[8:16], uint64(mod))
	copy(b[recordHeader:], value)
	return b
}

// recordRevs returns a record's CreateRev and ModRev.
func recordRevs(k, v []byte) (create, mod int64, err error) {
	if len(v) < recordHeader {
		return 0, 0, fmt.Errorf("store: corrupt record %q: %d bytes", k, len(v))
	}
	return int64(binary.BigEndian.Uint64(v[0:8])), int64(binary.BigEndian.Uint64(v[8:16])), nil
}

// decodeRecord copies a record out of bolt's memory map (valid only inside
// the transaction) into a KV. With arena non-nil the value is carved out of
// *arena, which must have room for it.
func decodeRecord(k, v []byte, arena *[]byte) (store.KV, error) {
	create, mod, err := recordRevs(k, v)
	if err != nil {
		return store.KV{}, err
	}
	kv := store.KV{Key: string(k), CreateRev: create, ModRev: mod}
	if val := v[recordHeader:]; len(val) > 0 {
		if arena == nil {
			kv.Value = append([]byte(nil), val...)
		} else {
			start := len(*arena)
			*arena = append(*arena, val...)
			kv.Value = (*arena)[start:len(*arena):len(*arena)]
		}
	}
	return kv, nil
}

// logEntry is one change in the change log; a revision's log record is
// the JSON array of its entries in op order.
type logEntry struct {
	T store.EventType `json:"t"`
	K string          `json:"k"`
	V []byte          `json:"v,omitempty"`
	C int64           `json:"c,omitempty"`
}

func encodeLog(events []store.Event) ([]byte, error) {
	entries := make([]logEntry, len(events))
	for i, e := range events {
		entries[i] = logEntry{T: e.Type, K: e.KV.Key, V: e.KV.Value, C: e.KV.CreateRev}
	}
	return json.Marshal(entries)
}

// decodeLog appends to out the events of revision rev whose key has the
// prefix.
func decodeLog(rev int64, b []byte, prefix string, out []store.Event) ([]store.Event, error) {
	var entries []logEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return out, fmt.Errorf("store: corrupt change log at revision %d: %w", rev, err)
	}
	for _, e := range entries {
		if len(e.K) < len(prefix) || e.K[:len(prefix)] != prefix {
			continue
		}
		ev := store.Event{Type: e.T, KV: store.KV{Key: e.K, ModRev: rev}}
		if e.T == store.EventPut {
			ev.KV.Value, ev.KV.CreateRev = e.V, e.C
		}
		out = append(out, ev)
	}
	return out, nil
}
