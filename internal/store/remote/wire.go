package remote

import (
	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// Wire types of the /v1/store endpoints (JSON, lowerCamelCase; values
// are base64 as []byte is in encoding/json).

// KV is a stored key on the wire.
type KV struct {
	Key       string `json:"key"`
	Value     []byte `json:"value,omitempty"`
	CreateRev int64  `json:"createRev,omitempty"`
	ModRev    int64  `json:"modRev"`
}

// ListResponse answers GET /v1/store/list.
type ListResponse struct {
	KVs []KV  `json:"kvs"`
	Rev int64 `json:"rev"`
}

// Op is one Txn write on the wire: type "put" or "delete".
type Op struct {
	Type  string `json:"type"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// Compare is a Txn precondition on the wire.
type Compare struct {
	Key    string `json:"key"`
	ModRev int64  `json:"modRev"`
}

// Txn is the body of POST /v1/store/txn.
type Txn struct {
	Compares []Compare `json:"compares,omitempty"`
	Ops      []Op      `json:"ops,omitempty"`
}

// RevResponse answers POST /v1/store/txn and GET /v1/store/rev.
type RevResponse struct {
	Rev int64 `json:"rev"`
}

// WatchLine is one line of the NDJSON watch stream: an event, or (Type
// "progress") the server's current revision, sent when idle so the client
// can tell a live stream from a dead connection.
type WatchLine struct {
	Type string `json:"type"` // put, delete, progress
	KV   KV     `json:"kv,omitempty"`
	Rev  int64  `json:"rev,omitempty"`
}

// Error codes of the store endpoints.
const (
	CodeConflict  = "conflict"
	CodeNotFound  = "not_found"
	CodeCompacted = "compacted"
)

// FromKV converts a store.KV to the wire.
func FromKV(kv store.KV) KV {
	return KV{Key: kv.Key, Value: kv.Value, CreateRev: kv.CreateRev, ModRev: kv.ModRev}
}

// ToKV converts a wire KV to a store.KV.
func (k KV) ToKV() store.KV {
	return store.KV{Key: k.Key, Value: k.Value, CreateRev: k.CreateRev, ModRev: k.ModRev}
}

// FromTxn converts a store.Txn to the wire.
func FromTxn(t store.Txn) Txn {
	var w Txn
	for _, c := range t.Compares {
		w.Compares = append(w.Compares, Compare(c))
	}
	for _, o := range t.Ops {
		typ := "put"
		if o.Type == store.OpDelete {
			typ = "delete"
		}
		w.Ops = append(w.Ops, Op{Type: typ, Key: o.Key, Value: o.Value})
	}
	return w
}

// ToTxn converts a wire Txn to a store.Txn; ok is false for an unknown
// op type.
func (w Txn) ToTxn() (store.Txn, bool) {
	var t store.Txn
	for _, c := range w.Compares {
		t.Compares = append(t.Compares, store.Compare(c))
	}
	for _, o := range w.Ops {
		switch o.Type {
		case "put":
			v := o.Value
			if v == nil {
				v = []byte{}
			}
			t.Ops = append(t.Ops, store.Put(o.Key, v))
		case "delete":
			t.Ops = append(t.Ops, store.Delete(o.Key))
		default:
			return t, false
		}
	}
	return t, true
}

// Agent sessions (session.go): after an HTTP/1.1 upgrade of
// GET /v1/agent/session to SessionProtocol, both ends write Frames, one
// JSON object a line.
const (
	SessionPath     = "/v1/agent/session"
	SessionProtocol = "berth-session/1"
	// MaxSessionFrame bounds one frame (a listing of a node's instances
	// is the largest).
	MaxSessionFrame = 64 << 20
)

// Frame is one line of an agent session, either way. A request (Op set)
// is answered by one frame with its ID and Status; a watch's answer is
// followed by frames carrying its Lines, the last with End.
type Frame struct {
	ID uint64 `json:"id"`
	// Op is the request: get (Key), list (Prefix), rev, txn (Txn), watch
	// (Prefix, After) or cancel (ends watch ID; not answered).
	Op     string `json:"op,omitempty"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	After  int64  `json:"after,omitempty"`
	Txn    *Txn   `json:"txn,omitempty"`
	// Status is the answer's HTTP status code; Error is set unless 2xx.
	Status int             `json:"status,omitempty"`
	Error  *model.APIError `json:"error,omitempty"`
	KV     *KV             `json:"kv,omitempty"`
	List   *ListResponse   `json:"list,omitempty"`
	Rev    int64           `json:"rev,omitempty"`
	// Heartbeat is the interval the server asks the agent to beat at
	// (on txn answers), as model.HeaderHeartbeatInterval.
	Heartbeat string `json:"heartbeat,omitempty"`
	// Lines are a watch's events and progress lines, as on the HTTP
	// stream; End says the watch ended (resume it after the last
	// complete revision).
	Lines []WatchLine `json:"lines,omitempty"`
	End   bool        `json:"end,omitempty"`
}
