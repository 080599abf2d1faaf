package cluster

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// claimAttempts bounds the compare-and-set retries of one Claim
	// against concurrent claims of the same session.
	claimAttempts = 8
	// claimTimeout bounds a Claim whatever its context: without a
	// JetStream quorum the broker must refuse the CONNECT promptly.
	claimTimeout = 5 * time.Second
	// releaseTimeout bounds one background release.
	releaseTimeout = 5 * time.Second
)

// owner is the value of a session's key in the owners bucket.
type owner struct {
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
}

// ownerKey is the bucket key of a session key: base64url, a valid KV key
// whatever the tenant and client id hold.
func ownerKey(key string) string {
	return "s" + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// kickSubject is the subject node answers kicks on.
func kickSubject(node string) string { return "petrel.node." + node + ".kick" }

// statusSubject is the subject node answers status requests on.
func statusSubject(node string) string { return "petrel.node." + node + ".status" }

// appendKick appends a kick request: the epoch (uint64, big endian), then
// the session key.
func appendKick(dst []byte, key string, epoch uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	return append(dst, key...)
}

// decodeKick decodes a kick request.
func decodeKick(b []byte) (key string, epoch uint64, ok bool) {
	if len(b) < 8 {
		return "", 0, false
	}
	return string(b[8:]), binary.BigEndian.Uint64(b), true
}

// Claim implements broker.Fabric. It writes {this node, epoch+1} to the
// session's key with a compare-and-set on the revision it read (create
// when missing), retrying a bounded number of times on a concurrent
// claim, then asks the previous owner, if another node, to close its
// connection [MQTT-3.1.4-2] and waits for its answer; "no responders"
// means that node is gone, which is fine. It returns ErrNotReady before
// the JetStream assets exist and the node follows the message log, and an error when JetStream does not
// answer within ctx (at most claimTimeout): no quorum, the broker refuses
// the CONNECT (server unavailable).
func (n *Node) Claim(ctx context.Context, key string) error {
	if !n.ready() {
		return ErrNotReady
	}
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	k := ownerKey(key)
	var prev owner
	var epoch, claimed uint64
	for attempt := 0; ; attempt++ {
		if attempt == claimAttempts {
			return fmt.Errorf("cluster: claim: %d concurrent claims of the session", claimAttempts)
		}
		prev = owner{}
		var rev uint64
		e, err := n.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("cluster: claim: %w", err)
		default:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &prev) != nil {
				prev = owner{} // unreadable: overwritten
			}
		}
		epoch = prev.Epoch + 1
		val, err := json.Marshal(owner{Node: n.cfg.Node, Epoch: epoch})
		if err != nil {
			return err
		}
		if rev == 0 {
			claimed, err = n.kv.Create(ctx, k, val)
		} else {
			claimed, err = n.kv.Update(ctx, k, val, rev)
		}
		if err == nil {
			break
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another claim won this round: read again
		}
		return fmt.Errorf("cluster: claim: %w", err)
	}
	n.mu.Lock()
	n.mu.held[key] = epoch
	n.mu.revs[key] = claimed
	n.mu.Unlock()
	if prev.Node == "" || prev.Node == n.cfg.Node {
		return nil // new, or taken over on this node by the broker itself
	}
	n.count.kicksSent.Add(1)
	_, err := n.ctl.RequestWithContext(ctx, kickSubject(prev.Node), appendKick(nil, key, epoch))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil // that node is gone: nothing to close
	}
	if err != nil {
		// The broker refuses the CONNECT: forget the claim here (the
		// record stays; the next claim overwrites it), so that failed
		// claims hold nothing.
		n.mu.Lock()
		if n.mu.held[key] == epoch {
			delete(n.mu.held, key)
			delete(n.mu.revs, key)
		}
		n.mu.Unlock()
		return fmt.Errorf("cluster: claim: node %s did not answer the takeover: %w", prev.Node, err)
	}
	return nil
}

// release is one session this node no longer holds.
type release struct {
	key   string
	epoch uint64
}

// Release implements broker.Fabric: it forgets key and has the background
// releaser delete its owner record if that still names this node and
// the epoch it claimed (a compare-and-set: a later claim elsewhere is
// never undone). It never waits; when too many releases are waiting the
// record stays (counted), which costs a needless kick at the next claim.
func (n *Node) Release(key string) {
	n.mu.Lock()
	epoch, ok := n.mu.held[key]
	delete(n.mu.held, key)
	delete(n.mu.revs, key)
	n.mu.Unlock()
	if !ok {
		return
	}
	select {
	case n.releases <- release{key, epoch}:
	default:
		n.count.releaseDropped.Add(1)
	}
}

// releaseLoop deletes released owner records, one at a time.
func (n *Node) releaseLoop() {
	defer n.wg.Done()
	for {
		select {
		case r := <-n.releases:
			n.deleteOwner(r)
		case <-n.ctx.Done():
			return
		}
	}
}

// deleteOwner deletes r's owner record if this node still owns it with
// r's epoch.
func (n *Node) deleteOwner(r release) {
	select {
	case <-n.assets:
	default:
		return
	}
	k := ownerKey(r.key)
	// A transient error (a timeout while an asset elects its leader, a
	// loaded machine) is tried again, a few times: a record left behind
	// only costs the next claim of the key a kick nobody answers.
	for attempt := range releaseAttempts {
		if attempt > 0 && !sleepCtx(n.ctx, time.Duration(attempt)*200*time.Millisecond) {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, releaseTimeout)
		e, err := n.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			cancel()
			return
		}
		if err == nil {
			var o owner
			if json.Unmarshal(e.Value(), &o) != nil || o.Node != n.cfg.Node || o.Epoch != r.epoch {
				cancel()
				return
			}
			err = n.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
			if err == nil || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				cancel()
				return // gone, or claimed again meanwhile
			}
		}
		cancel()
		n.log.Debug("cluster: release", "err", err, "attempt", attempt+1)
	}
}

// releaseAttempts bounds the tries of one release (deleteOwner).
const releaseAttempts = 3

// serveControl answers this node's kick and status subjects.
func (n *Node) serveControl() error {
	if _, err := n.ctl.Subscribe(kickSubject(n.cfg.Node), n.onKick); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if _, err := n.ctl.Subscribe(statusSubject(n.cfg.Node), n.onStatus); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return n.ctl.Flush()
}

// onKick closes this node's connection of the kicked session, unless this
// node claimed it again after the kicking node did (a newer epoch).
func (n *Node) onKick(m *nats.Msg) {
	key, epoch, ok := decodeKick(m.Data)
	if !ok {
		n.count.malformed.Add(1)
		return
	}
	n.mu.Lock()
	held, holds := n.mu.held[key]
	newer := holds && held > epoch
	n.mu.Unlock()
	if !newer {
		n.count.kicksReceived.Add(1)
		// The connection ends first, its pending writes made while this
		// node still holds the session (under its fencing token): the new
		// owner adopts the session only after the answer, so it reads
		// them.
		n.lose(key, epoch)
	}
	if err := m.Respond(nil); err != nil {
		n.log.Debug("cluster: kick answer", "err", err)
	}
}

// lose ends this node's connection of session key, which another node
// claimed with epoch, then lets the session go: the journal never writes
// or compacts it again.
func (n *Node) lose(key string, epoch uint64) {
	if h := n.host(); h != nil {
		h.KickRemote(key)
	}
	n.mu.Lock()
	if cur, ok := n.mu.held[key]; ok && cur <= epoch {
		delete(n.mu.held, key)
		delete(n.mu.revs, key)
	}
	n.mu.Unlock()
	if j := n.journal.Load(); j != nil {
		j.Forget(key)
	}
}

// onStatus answers another node's status request with this node's
// figures.
func (n *Node) onStatus(m *nats.Msg) {
	b, err := json.Marshal(nodeFigures{Connections: n.connections()})
	if err != nil {
		return
	}
	if err := m.Respond(b); err != nil {
		n.log.Debug("cluster: status answer", "err", err)
	}
}

// nodeFigures is what a node tells another about itself.
type nodeFigures struct {
	Connections int `json:"connections"`
}

// connections returns this node's client connections, -1 when unknown.
func (n *Node) connections() int {
	if n.cfg.Connections == nil {
		return -1
	}
	return n.cfg.Connections()
}

// fence returns the fencing token of this node's claim of key (the
// owners bucket revision it wrote), and whether it holds key.
func (n *Node) fence(key string) (uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rev, ok := n.mu.revs[key]
	return rev, ok
}
