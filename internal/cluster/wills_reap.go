package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The reaper publishes the wills of the connections of a node that died,
// and, at a node's start, those of its own previous life.
//
// Death: a node is taken for dead when no route to it is up and either
// the JetStream meta group reports it offline (at once after its server
// stopped, whatever the way; nats-server also marks a server offline
// whose heartbeats stopped for a while) or no route to it has been up for
// Config.WillAfter. A node never seen is taken to have been up when this
// reaper started.
//
// Reaping node X (by every survivor, or by X itself at its start): read
// X's life number L, list the records w.X.*, and for each record of a
// life before L (X restarted: those connections are gone) or, when X is
// dead, of life L: if the owners bucket still names X with the record's
// epoch (the client did not connect again, anywhere), delete the record
// with a compare-and-set on the revision read and, only if that delete
// succeeded, have the broker publish the will (orphanWillHost); else
// just delete it. The compare-and-set delete is the claim: of the
// reapers that read a record, exactly one deletes it, so a will is
// published once cluster-wide without any lock (a lock would have to
// expire when its holder dies, and then two holders could overlap). A
// reaper that dies between its delete and its call loses that one will
// (at most once); a record X itself wrote again meanwhile (a new
// connection of the session) has a new revision and is not deleted.
const (
	// reapCheck spaces the checks that the reaped node is still dead.
	reapCheck = 500 * time.Millisecond
	// reapTimeout bounds one bucket request of the reaper.
	reapTimeout = 5 * time.Second
	// reapListTimeout bounds the listing of a node's records (one key per
	// session with a will it had; the stream's subjects, in pages).
	reapListTimeout = 15 * time.Second
)

// peerState is what the reaper knows of another node.
type peerState struct {
	lastUp time.Time // a route to it was last seen up; or when the reaper started
	up     bool      // a route to it is up
	reaped bool      // reaped since it was last up
}

// reaper is the reaper's state, owned by its goroutine.
type reaper struct {
	n       *Node
	host    orphanWillHost
	peers   map[string]*peerState
	offline map[string]bool // the meta group's offline peers, at the last tick
	self    bool            // own leftovers reaped
}

// willReaper runs the reaper once the wills bucket is open and the broker
// bound: first this node's leftovers from its previous life, then every
// tick the other nodes' deaths.
func (n *Node) willReaper() {
	defer n.wg.Done()
	for _, c := range []<-chan struct{}{n.wills.ready, n.bound} {
		select {
		case <-c:
		case <-n.ctx.Done():
			return
		}
	}
	host, ok := n.host().(orphanWillHost)
	if !ok {
		n.log.Info("cluster: the broker publishes no orphan wills: this node reaps no node's wills")
		return
	}
	r := &reaper{n: n, host: host, peers: map[string]*peerState{}}
	r.learnPeers()
	tick := min(max(n.cfg.willAfter()/4, 100*time.Millisecond), 2*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		r.round()
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
	}
}

// learnPeers adds the nodes that ever kept wills (their life keys).
func (r *reaper) learnPeers() {
	ctx, cancel := context.WithTimeout(r.n.ctx, reapTimeout)
	defer cancel()
	kl, err := r.n.wills.kv.ListKeysFiltered(ctx, "life.*")
	if err != nil {
		return
	}
	defer kl.Stop() //nolint:errcheck // a lister's Stop fails only when already stopped
	for k := range kl.Keys() {
		if node := k[len("life."):]; node != r.n.cfg.Node {
			r.peer(node)
		}
	}
}

// peer returns node's state, new ones taken to be up now.
func (r *reaper) peer(node string) *peerState {
	p := r.peers[node]
	if p == nil {
		p = &peerState{lastUp: time.Now()}
		r.peers[node] = p
	}
	return p
}

// observe updates the peers from the embedded server's routes and meta
// group.
func (r *reaper) observe() {
	now := time.Now()
	for _, p := range r.peers {
		p.up = false
	}
	if rz, err := r.n.srv.Routez(&server.RoutezOptions{}); err == nil {
		for _, rt := range rz.Routes {
			if rt.RemoteName != "" && rt.RemoteName != r.n.cfg.Node {
				p := r.peer(rt.RemoteName)
				p.up, p.lastUp, p.reaped = true, now, false
			}
		}
	}
	r.offline = map[string]bool{}
	if jsz, err := r.n.srv.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil {
		for _, pi := range jsz.Meta.Replicas {
			if pi != nil && pi.Name != r.n.cfg.Node {
				r.peer(pi.Name)
				if pi.Offline {
					r.offline[pi.Name] = true
				}
			}
		}
	}
}

// dead reports whether node is taken for dead.
func (r *reaper) dead(node string) bool {
	p := r.peers[node]
	if p == nil || p.up {
		return false
	}
	return r.offline[node] || time.Since(p.lastUp) >= r.n.cfg.willAfter()
}

// round reaps this node's leftovers until done, and each dead node not
// reaped since it was last up.
func (r *reaper) round() {
	r.observe()
	if !r.self {
		if r.self = r.reap(r.n.cfg.Node); r.self {
			r.n.wills.count.nodesReaped.Add(1)
		}
	}
	for node, p := range r.peers {
		if p.reaped || !r.dead(node) {
			continue
		}
		if p.reaped = r.reap(node); p.reaped {
			r.n.wills.count.nodesReaped.Add(1)
		}
	}
}

// reap reaps node's wills; it reports whether that is done (false: an
// error stopped it, or the node came back; tried again at the next
// round).
func (r *reaper) reap(node string) bool {
	n := r.n
	ctx := n.ctx
	self := node == n.cfg.Node
	life := n.wills.life
	var err error
	if !self {
		if life, err = r.lifeOf(ctx, node); err != nil {
			r.failed(node, err)
			return false
		}
	}
	keys, err := r.keysOf(ctx, node)
	if err != nil {
		r.failed(node, err)
		return false
	}
	checked := time.Now()
	for _, k := range keys {
		if !self && time.Since(checked) > reapCheck {
			r.observe()
			checked = time.Now()
			if !r.dead(node) {
				return false // it came back: its records are its own again
			}
		}
		if err := r.reapOne(ctx, k, node, life, self); err != nil {
			r.failed(node, err)
			return false
		}
	}
	return true
}

// failed counts and logs a reaping stopped by err.
func (r *reaper) failed(node string, err error) {
	r.n.wills.count.reapFailed.Add(1)
	r.n.logDrop(&r.n.count.lastWillFailed, "cluster: reaping a node's wills stopped; trying again", "dead", node, "err", err)
}

// lifeOf reads node's life number (0 when it has none).
func (r *reaper) lifeOf(ctx context.Context, node string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	e, err := r.n.wills.kv.Get(ctx, lifeKey(node))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case len(e.Value()) != 8:
		return 0, errors.New("malformed life record")
	}
	return binary.BigEndian.Uint64(e.Value()), nil
}

// keysOf lists node's will records, deleted ones included (reapOne
// skips them): the subjects of the bucket's stream, read from the
// stream's leader without a consumer. A consumer (a KV key listing) would
// be created by the meta leader, which may be the node that just died:
// its creation would wait out the election, and a listing stuck there
// held the reaping for up to a minute. This one fails within
// reapListTimeout, and the next round tries again.
func (r *reaper) keysOf(ctx context.Context, node string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, reapListTimeout)
	defer cancel()
	s, err := r.n.js.Stream(ctx, "KV_"+willsBucket)
	if err != nil {
		return nil, err
	}
	prefix := "$KV." + willsBucket + "."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+willKeyPrefix(node)+"*"))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subj, prefix))
	}
	slices.Sort(keys)
	return keys, nil
}

// reapOne reads the record k of node and reaps it (reapEntry); a record
// deleted meanwhile is done.
func (r *reaper) reapOne(ctx context.Context, k, node string, life uint64, self bool) error {
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	e, err := r.n.wills.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.reapEntry(ctx, e, node, life, self)
}

// reapEntry reaps the record e of node, whose life number is life: a
// record of an earlier life, or (node dead, not self) of this one, is
// deleted, with a compare-and-set on e's revision, and its will published
// when its session's owner record still names node with its epoch and
// this reaper's delete won.
func (r *reaper) reapEntry(ctx context.Context, e jetstream.KeyValueEntry, node string, life uint64, self bool) error {
	n := r.n
	wr, err := decodeWill(e.Value())
	if err == nil && (wr.life > life || self && wr.life == life) {
		return nil // written after the life was read, or by this node now: live
	}
	owned := false
	if err != nil {
		n.count.malformed.Add(1)
	} else if owned, err = r.ownedBy(ctx, wr.rec.ClientID, node, wr.epoch); err != nil {
		return err
	}
	err = n.wills.kv.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return nil // another reaper took it, or node wrote it again
	case err != nil:
		return err
	case owned:
		r.host.SendOrphanWill(wr.rec)
		n.wills.count.reaped.Add(1)
	case wr.rec != nil:
		n.wills.count.skipped.Add(1)
	}
	return nil
}

// ownedBy reports whether the owners bucket names node with epoch for
// session key: its client did not connect again since.
func (r *reaper) ownedBy(ctx context.Context, key, node string, epoch uint64) (bool, error) {
	e, err := r.n.kv.Get(ctx, ownerKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil // released: the session ended
	}
	if err != nil {
		return false, err
	}
	var o owner
	if json.Unmarshal(e.Value(), &o) != nil {
		return false, nil
	}
	return o.Node == node && o.Epoch == epoch, nil
}
