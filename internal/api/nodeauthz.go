package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
	"github.com/berth-dev/berth/internal/store"
)

// nodeAuthz decides what one caller may do with the raw store. The admin
// may do anything. An agent may read node objects (its overlay needs its
// peers' subnets, addresses and VTEPs), the instances assigned to it and
// the revisions (specs) of apps with an instance assigned to it, one key
// at a time; it may write only its
// node object (the server stamps the heartbeat with its own clock and
// keeps operator fields), the Status of its instances, and events about
// itself. Anything else is 403.
type nodeAuthz struct {
	s     *Server
	admin bool
	node  string
}

func (s *Server) authz(r *http.Request) nodeAuthz {
	id := IdentityFrom(r.Context())
	return nodeAuthz{s: s, admin: id.Admin, node: id.Node}
}

func (z nodeAuthz) canRead(key string) string {
	switch {
	case z.admin,
		strings.HasPrefix(key, model.PrefixNodes),
		strings.HasPrefix(key, model.PrefixInstances),
		strings.HasPrefix(key, model.PrefixRevisions):
		return ""
	}
	return "node " + z.node + " may not read " + key
}

func (z nodeAuthz) canList(prefix string) string {
	switch {
	case z.admin,
		strings.HasPrefix(prefix, model.PrefixNodes),
		strings.HasPrefix(prefix, model.PrefixInstances):
		return ""
	}
	return "node " + z.node + " may not list or watch " + prefix
}

// canReadRevision lets an agent read a revision (its spec: image, env,
// command) only of an app that has an instance assigned to the node.
// Keys outside /revisions/ pass. The fan-out's index of who runs what
// follows the store a moment behind, so a node may still read the spec
// of an app moved off it a moment ago.
func (z nodeAuthz) canReadRevision(ctx context.Context, key string) (string, error) {
	rest, ok := strings.CutPrefix(key, model.PrefixRevisions)
	if z.admin || !ok {
		return "", nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "node " + z.node + " may not read " + key, nil
	}
	runs, err := z.s.nodeWatch.runsApp(ctx, z.s, z.node, parts[0], parts[1])
	if err != nil || runs {
		return "", err
	}
	// The index follows the store a little behind: an agent may have
	// listed its instance before the index saw it. Ask the store.
	kvs, _, err := z.s.opts.Store.List(ctx, model.InstancePrefix(parts[0], parts[1]))
	if err != nil {
		return "", err
	}
	for _, kv := range kvs {
		if instanceNode(kv.Value) == z.node {
			return "", nil
		}
	}
	return "node " + z.node + " may not read " + key + ": no instance of app " + parts[0] + "/" + parts[1] + " is assigned to it", nil
}

// visible filters values an agent may read: instances only if assigned
// to it.
func (z nodeAuthz) visible(key string, value []byte) bool {
	if z.admin || !strings.HasPrefix(key, model.PrefixInstances) {
		return true
	}
	return instanceNode(value) == z.node
}

// instanceNode is the node an instance value is assigned to ("" for none
// or an unreadable value). It decides what an agent sees, both here and in
// the per-node fan-out of the instance watch.
func instanceNode(value []byte) string {
	var in struct {
		Node string `json:"node"`
	}
	if json.Unmarshal(value, &in) != nil {
		return ""
	}
	return in.Node
}

// checkTxn authorizes an agent's Txn and returns it with the node's
// heartbeat stamped by the server. code/msg are set when refused.
func (z nodeAuthz) checkTxn(ctx context.Context, t store.Txn) (store.Txn, int, string) {
	for _, c := range t.Compares {
		if msg := z.canRead(c.Key); msg != "" {
			return t, http.StatusForbidden, msg
		}
	}
	compared := map[string]int64{}
	for _, c := range t.Compares {
		compared[c.Key] = c.ModRev
	}
	for i, op := range t.Ops {
		if op.Type != store.OpPut {
			return t, http.StatusForbidden, "node " + z.node + " may not delete " + op.Key
		}
		var err error
		var code int
		var msg string
		switch {
		case op.Key == model.NodeKey(z.node):
			var beatOnly bool
			t.Ops[i].Value, beatOnly, code, msg, err = z.nodePut(ctx, op.Value)
			if beatOnly && msg == "" && err == nil {
				t.Ops[i].Key = "" // a heartbeat only: kept in memory, dropped below
			}
		case strings.HasPrefix(op.Key, model.PrefixInstances):
			code, msg, err = z.instancePut(ctx, op, compared)
		case strings.HasPrefix(op.Key, model.PrefixEvents):
			t.Ops[i].Value, msg = z.eventPut(op.Value)
			code = http.StatusForbidden
		case strings.HasPrefix(op.Key, model.PrefixNodes):
			return t, http.StatusForbidden, "node " + z.node + " may not write another node's object " + op.Key
		default:
			return t, http.StatusForbidden, "node " + z.node + " may not write " + op.Key
		}
		if err != nil {
			return t, http.StatusInternalServerError, err.Error()
		}
		if msg != "" {
			return t, code, msg
		}
	}
	ops := t.Ops[:0]
	for _, op := range t.Ops {
		if op.Key != "" {
			ops = append(ops, op)
		}
	}
	t.Ops = ops
	return t, 0, ""
}

// nodePut keeps what operators and controllers own (cordon, a down
// status, the subnet the server allocated), keeps the VTEP when the write
// omits it (a re-register before the overlay is up), and stamps the heartbeat with the
// server's clock, so a skewed agent clock cannot fake or lose liveness.
// beatOnly reports a write that changes nothing but the heartbeat: with
// Options.Liveness set, the beat is then kept in memory and the write is
// dropped (see nodes.Liveness).
func (z nodeAuthz) nodePut(ctx context.Context, value []byte) (b []byte, beatOnly bool, code int, msg string, err error) {
	var n model.Node
	if err := json.Unmarshal(value, &n); err != nil {
		return nil, false, http.StatusBadRequest, "node object: " + err.Error(), nil
	}
	if n.Name != z.node {
		return nil, false, http.StatusForbidden, "node " + z.node + " may not write a node object named " + n.Name, nil
	}
	var cur store.Object[model.Node]
	shared, err := z.s.opts.State.Nodes.Get(ctx, model.NodeKey(z.node))
	if err == nil {
		cur = *shared
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		n.Subnet = ""
	case err != nil:
		return nil, false, 0, "", err
	default:
		n.Cordoned = cur.Value.Cordoned
		n.Subnet = cur.Value.Subnet
		if n.VTEP == nil {
			n.VTEP = cur.Value.VTEP
		}
		if cur.Value.Status == model.NodeDown {
			n.Status = model.NodeDown // the node controller lifts it (hysteresis)
		}
	}
	if n.VTEP != nil {
		if err := n.VTEP.Validate(); err != nil {
			return nil, false, http.StatusBadRequest, "node object: " + err.Error(), nil
		}
	}
	now := time.Now().UTC()
	if lv := z.s.opts.Liveness; lv != nil && cur.ModRev != 0 {
		n.LastHeartbeat = cur.Value.LastHeartbeat
		if same, err := sameJSON(n, cur.Value); err != nil || same {
			lv.Beat(z.node, now)
			return nil, true, 0, "", err
		}
	}
	n.LastHeartbeat = now
	b, err = json.Marshal(n)
	if err == nil {
		z.s.opts.Liveness.Beat(z.node, now)
	}
	return b, false, 0, "", err
}

// beat takes a heartbeat of a node whose object has not changed (the
// session's "beat" op, a heartbeat without the node object): if the
// node is still at modRev, as its agent last wrote or read it, the beat
// is kept in memory, as nodePut keeps a write that changes nothing but
// the heartbeat. Otherwise, or on a server that stores every beat
// (no Liveness), it is ErrConflict: the agent writes its node instead.
func (z nodeAuthz) beat(ctx context.Context, key string, modRev int64) error {
	if key != model.NodeKey(z.node) {
		return refuseForbidden("node " + z.node + " may not beat for " + key)
	}
	lv := z.s.opts.Liveness
	if lv == nil {
		return store.ErrConflict
	}
	cur, err := z.s.opts.State.Nodes.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ErrConflict
	case err != nil:
		return err
	case cur.ModRev != modRev:
		return store.ErrConflict
	}
	lv.Beat(z.node, time.Now().UTC())
	return nil
}

// sameJSON reports whether a and b encode to the same JSON. Values that
// are deeply equal do (the usual case: a status write), without encoding
// both; others may still (a nil and an empty map).
func sameJSON(a, b any) (bool, error) {
	if reflect.DeepEqual(a, b) {
		return true, nil
	}
	x, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	y, err := json.Marshal(b)
	return bytes.Equal(x, y), err
}

// instancePut admits a status update of an instance assigned to the
// node: the Txn must compare the key at the revision read, and nothing
// but Status may change.
func (z nodeAuthz) instancePut(ctx context.Context, op store.Op, compared map[string]int64) (int, string, error) {
	rev, ok := compared[op.Key]
	if !ok || rev == 0 {
		return http.StatusForbidden, "node " + z.node + " may only update the status of existing instances (compare-and-swap)", nil
	}
	stored, err := z.s.opts.State.Instances.Get(ctx, op.Key)
	if errors.Is(err, store.ErrNotFound) {
		return http.StatusConflict, store.ErrConflict.Error(), nil
	} else if err != nil {
		return 0, "", err
	}
	if stored.ModRev != rev {
		return http.StatusConflict, store.ErrConflict.Error(), nil
	}
	cur := stored.Value // a copy: the view's object is shared
	var next model.Instance
	if err := json.Unmarshal(op.Value, &next); err != nil {
		return http.StatusBadRequest, "instance: " + err.Error(), nil
	}
	if cur.Node != z.node {
		return http.StatusForbidden, "node " + z.node + " may not write instance " + cur.ID + " of node " + cur.Node, nil
	}
	cur.Status, next.Status = model.InstanceStatus{}, model.InstanceStatus{}
	if same, _ := sameJSON(cur, next); !same {
		return http.StatusForbidden, "node " + z.node + " may change only the status of instance " + cur.ID, nil
	}
	return 0, "", nil
}

// eventPut admits events about the node itself.
func (z nodeAuthz) eventPut(value []byte) ([]byte, string) {
	var e model.Event
	if err := json.Unmarshal(value, &e); err != nil {
		return nil, "event: " + err.Error()
	}
	if e.Node == "" {
		e.Node = z.node
	}
	if e.Node != z.node {
		return nil, "node " + z.node + " may not record events of node " + e.Node
	}
	b, _ := json.Marshal(e)
	return b, ""
}
