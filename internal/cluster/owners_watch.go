package cluster

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The owners watch. A takeover reaches the node that held the session by
// its kick (Claim asks it to close its connection). When the kick cannot
// reach it, the claim goes on without it: the claiming node finds no one
// to answer on that node's kick subject, which is how a dead node looks,
// and also a live node on the other side of a network partition. That
// node would keep its client's connection after the partition healed,
// the client connected on two nodes [MQTT-3.1.4-2] (it could write
// nothing the whole time: its journal writes need a quorum, and the new
// owner's fencing marker refuses them). So every node also watches the
// owners bucket: a claim by another node of a session this node holds
// under an older epoch ends this node's connection as the kick would
// have, when no kick did within kickGrace (counted in KicksMissed). The
// watch carries every claim in the cluster to every node (a kick goes to
// the old owner only): one small message per node for each CONNECT that
// claims a persistent session.

// watchOwners runs the owners watch once the assets exist and the broker
// is bound, from the bucket's next update on.
func (n *Node) watchOwners() {
	defer n.wg.Done()
	for _, c := range []<-chan struct{}{n.assets, n.bound} {
		select {
		case <-c:
		case <-n.ctx.Done():
			return
		}
	}
	n.rerun("the watch of the session owners ended", 5*time.Second, func() error {
		w, err := n.kv.WatchAll(n.ctx, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		defer w.Stop() //nolint:errcheck // a watcher's Stop fails only when already stopped
		for e := range w.Updates() {
			if e != nil {
				n.ownerChanged(e)
			}
		}
		return nil
	})
}

// ownerChanged applies one update of the owners bucket: another node's
// claim of a session this node holds under an older epoch.
func (n *Node) ownerChanged(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	var o owner
	if json.Unmarshal(e.Value(), &o) != nil || o.Node == n.cfg.Node {
		return
	}
	key, ok := sessionOfOwnerKey(e.Key())
	if !ok {
		return
	}
	if !n.holdsBefore(key, o.Epoch) {
		return // not here, or claimed here again since
	}
	// The claim's kick normally follows at once (the claiming node
	// sends it once the record is written): leave the takeover to it.
	time.AfterFunc(kickGrace, func() {
		if n.ctx.Err() != nil || !n.holdsBefore(key, o.Epoch) {
			return
		}
		n.count.kicksMissed.Add(1)
		n.log.Info("cluster: a session this node held was taken over by another node whose kick did not arrive; closing its connection here",
			"node", o.Node)
		n.lose(key, o.Epoch)
	})
}

// kickGrace is how long after seeing another node's claim of a session
// it holds a node waits for that claim's kick before acting on its own:
// the claiming node's kick request is bounded by claimTimeout.
const kickGrace = claimTimeout

// holdsBefore reports whether this node holds session key under an
// epoch older than epoch.
func (n *Node) holdsBefore(key string, epoch uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	held, ok := n.mu.held[key]
	return ok && held < epoch
}

// sessionOfOwnerKey is ownerKey's inverse; strict, so that one session
// has one bucket key.
func sessionOfOwnerKey(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "s")
	if !ok || strings.ContainsAny(rest, "\r\n") { // which the decoder skips
		return "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	return string(b), err == nil
}
