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

// A revision's change-log record lists its changes in op order. It is
// binary: logFormat, then per change its type (one byte), the key
// (uvarint length, bytes) and, for a put, CreateRev (uvarint) and the
// value (uvarint length, bytes). Stores written before this format hold
// JSON arrays of logEntry, which decodeLog still reads (they start with
// '[').
const logFormat byte = 1

// logEntry is one change of a JSON change-log record (the old format).
type logEntry struct {
	T store.EventType `json:"t"`
	K string          `json:"k"`
	V []byte          `json:"v,omitempty"`
	C int64           `json:"c,omitempty"`
}

func encodeLog(events []store.Event) []byte {
	n := 1
	for _, e := range events {
		n += 1 + 3*binary.MaxVarintLen64 + len(e.KV.Key) + len(e.KV.Value)
	}
	b := make([]byte, 1, n)
	b[0] = logFormat
	for _, e := range events {
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, uint64(len(e.KV.Key)))
		b = append(b, e.KV.Key...)
		if e.Type == store.EventPut {
			b = binary.AppendUvarint(b, uint64(e.KV.CreateRev))
			b = binary.AppendUvarint(b, uint64(len(e.KV.Value)))
			b = append(b, e.KV.Value...)
		}
	}
	return b
}

// decodeLog appends to out the events of revision rev whose key has the
// prefix. b is only read: keys and values are copied out of it.
func decodeLog(rev int64, b []byte, prefix string, out []store.Event) ([]store.Event, error) {
	if len(b) > 0 && b[0] == '[' {
		return decodeJSONLog(rev, b, prefix, out)
	}
	corrupt := func(what string) error {
		return fmt.Errorf("store: corrupt change log at revision %d: %s", rev, what)
	}
	if len(b) == 0 || b[0] != logFormat {
		return out, corrupt("unknown format")
	}
	r := logReader{b: b[1:]}
	for len(r.b) > 0 {
		t := store.EventType(r.b[0])
		r.b = r.b[1:]
		key := r.bytes()
		if t != store.EventPut && t != store.EventDelete {
			return out, corrupt(fmt.Sprintf("event type %d", t))
		}
		ev := store.Event{Type: t, KV: store.KV{ModRev: rev}}
		var val []byte
		if t == store.EventPut {
			ev.KV.CreateRev = int64(r.uvarint())
			val = r.bytes()
		}
		if r.err {
			return out, corrupt("truncated")
		}
		if len(key) < len(prefix) || string(key[:len(prefix)]) != prefix {
			continue
		}
		ev.KV.Key, ev.KV.Value = string(key), clone(val)
		out = append(out, ev)
	}
	return out, nil
}

// logReader reads a binary change-log record; err records a short read.
type logReader struct {
	b   []byte
	err bool
}

func (r *logReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *logReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err, r.b = true, nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// decodeJSONLog is decodeLog for a record of the old JSON format.
func decodeJSONLog(rev int64, b []byte, prefix string, out []store.Event) ([]store.Event, error) {
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
