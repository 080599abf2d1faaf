package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
)

// The will registry: while a client with a will is connected to this
// node, its will is recorded in the replicated bucket PETREL_WILLS, so
// that when this node dies another one publishes it (wills_reap.go).
//
// Keys of the bucket:
//
//	w.<node>.<hex sha256(session key)[:16 bytes]>  a will record (wills_codec.go)
//	life.<node>                                     the node's life number
//
// A node's life number grows by one at each start (a compare-and-set on
// life.<node>); each record carries the life of the node that wrote it.
// Only the node itself writes and removes its w.<node>.* records while it
// lives; after its death (or at its next start, for the records of its
// previous life) they are reaped.
const (
	// willsBucket is the wills bucket.
	willsBucket = "PETREL_WILLS"
	// willQueueBytes bounds the records (and session keys) waiting to be
	// written; past it a KeepWill is not recorded (counted in
	// WillCounters.Unqueued) and an earlier record of its session still
	// waiting is removed instead, so the registry never keeps a stale will.
	willQueueBytes = 64 << 20
	// willWriteTimeout bounds one write to the bucket.
	willWriteTimeout = 5 * time.Second
	// willFlushWait bounds how long Close waits for the waiting writes.
	willFlushWait = 2 * time.Second
)

// orphanWillHost is what the node calls on its broker to publish the
// will of a connection whose node died; the broker's FabricHost
// implements it (broker.orphanWillHost). Without it the node keeps its
// own registry but reaps no other node's.
type orphanWillHost interface {
	// SendOrphanWill publishes the will in rec (authorized again for
	// rec.Holder under the policy in force, its delay honoured from now).
	SendOrphanWill(rec *broker.StoredSession)
}

// WillCounters are the will registry's event counts.
type WillCounters struct {
	Kept        uint64 // will records written
	Dropped     uint64 // will records removed by DropWill
	Reaped      uint64 // wills of dead connections handed to the broker to publish
	Skipped     uint64 // wills of dead connections not published: the client connected again meanwhile, or its session ended
	ReapFailed  uint64 // reaping rounds stopped by an error (tried again)
	Unqueued    uint64 // KeepWill calls not recorded: too many bytes waiting (willQueueBytes)
	Unheld      uint64 // KeepWill calls for a session this node does not hold (taken over meanwhile): not recorded
	WriteFailed uint64 // records not written or not removed: JetStream refused or did not answer
	NodesReaped uint64 // reapings this node completed, wills found or not: of a dead node, or of its own previous life at start
}

// willCounts are the live counts behind WillCounters.
type willCounts struct {
	kept, dropped, reaped, skipped, reapFailed atomic.Uint64
	unqueued, unheld, writeFailed, nodesReaped atomic.Uint64
}

func (c *willCounts) snapshot() WillCounters {
	return WillCounters{Kept: c.kept.Load(), Dropped: c.dropped.Load(), Reaped: c.reaped.Load(),
		Skipped: c.skipped.Load(), ReapFailed: c.reapFailed.Load(), Unqueued: c.unqueued.Load(),
		Unheld: c.unheld.Load(), WriteFailed: c.writeFailed.Load(), NodesReaped: c.nodesReaped.Load()}
}

// willState is the node's will registry.
type willState struct {
	// wake has a token when writes wait.
	wake chan struct{}
	// ready is closed once kv and life are set.
	ready chan struct{}
	kv    jetstream.KeyValue
	life  uint64
	count willCounts

	mu struct {
		sync.Mutex
		// pending is, per session key, the record to write; nil: remove
		// this node's record of the key. A later call replaces an earlier
		// one that is still waiting, so that the last call wins (the
		// bucket ends as if each had been written in turn).
		pending map[string][]byte
		order   []string // keys of pending, oldest first, from head
		head    int
		bytes   int64 // of pending: records and keys
		// revs is, per session key, the revision of this node's record:
		// DropWill deletes that revision only.
		revs map[string]uint64
		// writing is the key whose record (or removal) the writer is
		// writing now, taken from pending; writingNow says there is one.
		writing    string
		writingNow bool
	}
}

func (w *willState) init() {
	w.wake = make(chan struct{}, 1)
	w.ready = make(chan struct{})
	w.mu.pending = make(map[string][]byte)
	w.mu.revs = make(map[string]uint64)
}

// willKey is the bucket key of this node's record of session key: the
// hash keeps the key valid whatever the session key holds; 128 bits, so
// that no client can make two sessions share a record.
func willKey(node, key string) string {
	h := sha256.Sum256([]byte(key))
	return willKeyPrefix(node) + hex.EncodeToString(h[:16])
}

// willKeyPrefix starts the keys of node's will records.
func willKeyPrefix(node string) string { return "w." + node + "." }

func lifeKey(node string) string { return "life." + node }

// KeepWill implements broker.WillKeeper: it records, replicated, the will
// of this node's connection of session key (rec.ClientID = key), with the
// epoch of this node's claim of key, replacing any earlier one. Call it
// after Claim; a key this node does not hold (taken over meanwhile) is
// not recorded. It never blocks: the record is written by the writer,
// after the earlier calls of key.
func (n *Node) KeepWill(key string, rec *broker.StoredSession) {
	if rec == nil || rec.Will == nil {
		n.DropWill(key)
		return
	}
	n.mu.Lock()
	epoch, held := n.mu.held[key]
	n.mu.Unlock()
	if !held {
		n.wills.count.unheld.Add(1)
		n.DropWill(key)
		return
	}
	if len(rec.Will.Payload) > willQueueBytes {
		n.wills.count.unqueued.Add(1) // refused before it is copied
		n.queueWill(key, nil)
		return
	}
	cp := *rec
	cp.ClientID = key
	val, err := appendWill(nil, 0, epoch, &cp) // the life is set by the writer
	if err != nil {
		n.log.Warn("cluster: will not recorded", "err", shorten(err.Error()))
		n.wills.count.writeFailed.Add(1)
		n.DropWill(key)
		return
	}
	if !n.queueWill(key, val) {
		n.wills.count.unqueued.Add(1)
		n.logDrop(&n.count.lastWillUnqueued, "cluster: will not recorded: too many waiting to be written")
		n.queueWill(key, nil)
	}
}

// DropWill implements broker.WillKeeper: it removes this node's record of
// session key's will, after the earlier calls of key. It deletes only the
// revision this node wrote: other nodes' records of key are other keys,
// and a record another node reaped is not written again.
func (n *Node) DropWill(key string) {
	n.queueWill(key, nil)
}

// queueWill queues val (nil: a removal) for key, replacing what waits
// for key. A record that would take the waiting bytes over
// willQueueBytes is refused (false); a removal never is (it replaces a
// larger record, or costs its key: bounded by the sessions), and is not
// queued when nothing of key was written, waits or is being written.
func (n *Node) queueWill(key string, val []byte) bool {
	w := &n.wills
	w.mu.Lock()
	old, waiting := w.mu.pending[key]
	if _, written := w.mu.revs[key]; val == nil && !waiting && !written && !(w.mu.writingNow && w.mu.writing == key) {
		w.mu.Unlock()
		return true // nothing of key's recorded or on its way: nothing to remove
	}
	delta := int64(len(val)) - int64(len(old))
	if !waiting {
		delta += int64(len(key))
	}
	if val != nil && delta > 0 && w.mu.bytes+delta > willQueueBytes {
		w.mu.Unlock()
		return false
	}
	w.mu.pending[key] = val
	w.mu.bytes += delta
	if !waiting {
		w.mu.order = append(w.mu.order, key)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// nextWillLocked takes the oldest waiting write; ok is false when none
// waits.
func (w *willState) nextWillLocked() (key string, val []byte, ok bool) {
	if w.mu.head == len(w.mu.order) {
		return "", nil, false
	}
	key = w.mu.order[w.mu.head]
	w.mu.order[w.mu.head] = ""
	w.mu.head++
	if w.mu.head == len(w.mu.order) {
		w.mu.order, w.mu.head = w.mu.order[:0], 0
	} else if w.mu.head > 1024 && w.mu.head > len(w.mu.order)/2 {
		w.mu.order = append(w.mu.order[:0], w.mu.order[w.mu.head:]...)
		w.mu.head = 0
	}
	val = w.mu.pending[key]
	delete(w.mu.pending, key)
	w.mu.bytes -= int64(len(val) + len(key))
	w.mu.writing, w.mu.writingNow = key, true
	return key, val, true
}

// willWriter opens the wills bucket, takes this node's life number, then
// writes the waiting records one at a time, for as long as the node runs.
func (n *Node) willWriter() {
	defer n.wg.Done()
	select {
	case <-n.assets:
	case <-n.ctx.Done():
		return
	}
	if !n.openWills() {
		return
	}
	close(n.wills.ready)
	w := &n.wills
	for {
		w.mu.Lock()
		key, val, ok := w.nextWillLocked()
		w.mu.Unlock()
		if !ok {
			select {
			case <-w.wake:
				continue
			case <-n.ctx.Done():
				return
			}
		}
		n.writeWill(key, val)
		w.mu.Lock()
		w.mu.writing, w.mu.writingNow = "", false
		w.mu.Unlock()
	}
}

// openWills creates (or updates) the wills bucket and takes this node's
// next life number, retrying until they succeed or the node stops.
func (n *Node) openWills() bool {
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		err := n.openWillsOnce(ctx)
		cancel()
		if err == nil {
			return true
		}
		n.log.Warn("cluster: wills bucket not ready; retrying", "err", err)
		if !sleepCtx(n.ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) openWillsOnce(ctx context.Context) error {
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   willsBucket,
		History:  1,
		Replicas: n.cfg.replicas(),
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return err
	}
	k := lifeKey(n.cfg.Node)
	for {
		var life, rev uint64
		e, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if len(e.Value()) == 8 {
				life = binary.BigEndian.Uint64(e.Value())
			}
		}
		val := binary.BigEndian.AppendUint64(nil, life+1)
		if rev == 0 {
			_, err = kv.Create(ctx, k, val)
		} else {
			_, err = kv.Update(ctx, k, val, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // a previous life of this node is still writing: read again
		}
		if err != nil {
			return err
		}
		n.wills.kv, n.wills.life = kv, life+1
		return nil
	}
}

// writeWill writes val as this node's record of key, or removes the
// record this node wrote when val is nil.
func (n *Node) writeWill(key string, val []byte) {
	w := &n.wills
	ctx, cancel := context.WithTimeout(n.ctx, willWriteTimeout)
	defer cancel()
	k := willKey(n.cfg.Node, key)
	if val != nil {
		setWillLife(val, w.life)
		rev, err := w.kv.Put(ctx, k, val)
		if err != nil {
			w.count.writeFailed.Add(1)
			n.logDrop(&n.count.lastWillFailed, "cluster: will not recorded", "err", err)
			return
		}
		w.mu.Lock()
		w.mu.revs[key] = rev
		w.mu.Unlock()
		w.count.kept.Add(1)
		return
	}
	w.mu.Lock()
	rev, ok := w.mu.revs[key]
	delete(w.mu.revs, key)
	w.mu.Unlock()
	if !ok {
		return // never written (or not written): nothing to remove
	}
	err := w.kv.Delete(ctx, k, jetstream.LastRevision(rev))
	switch {
	case err == nil:
		w.count.dropped.Add(1)
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		// Reaped meanwhile (this node was taken for dead): nothing of
		// this node's is left.
	default:
		w.count.writeFailed.Add(1)
		n.logDrop(&n.count.lastWillFailed, "cluster: will record not removed", "err", err)
	}
}

// flushWills waits, at most d, until the waiting records are written: on
// a graceful stop the wills the broker published itself are removed
// before the other nodes could take this node for dead.
func (n *Node) flushWills(d time.Duration) {
	select {
	case <-n.wills.ready:
	default:
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n.wills.mu.Lock()
		idle := len(n.wills.mu.pending) == 0 && !n.wills.mu.writingNow
		n.wills.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WillCounters returns the will registry's event counts.
func (n *Node) WillCounters() WillCounters { return n.wills.count.snapshot() }
