package diskstore

import (
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrel-mqtt/petrel/broker"
)

// Bounds of one commit group.
const (
	maxGroupReqs  = 1024
	maxGroupBytes = 16 << 20
)

// request is one Commit handed to the committer.
type request struct {
	b       *pebble.Batch
	ep      *epoch // whose engine b is for
	durable bool
	ride    bool   // durable, completed by the next sync (ride.go)
	lastCid uint64 // highest cid the batch allocated, 0 for none
	gen     uint64 // the cid map's generation undo applies to
	undo    []undo
	done    chan error // buffered 1
}

// undo reverts one change of the ClientID to cid map when the commit that
// made it fails: cid is what the batch set (0: it deleted), prev what was
// there before (0: nothing).
type undo struct {
	clientID  string
	cid, prev uint64
}

// encoded holds the values Commit encodes before it takes the lock.
type encoded struct {
	buf  []byte
	offs []int // offs[i], offs[i+1]: the value of op i (empty for none)
	key  []byte
}

var encodedPool = sync.Pool{New: func() any { return new(encoded) }}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

func (e *encoded) value(i int) []byte { return e.buf[e.offs[i]:e.offs[i+1]] }

// encodeValues encodes the values of the ops that do not depend on a cid.
func (e *encoded) encodeValues(b *broker.Batch) error {
	e.buf, e.offs = e.buf[:0], append(e.offs[:0], 0)
	var err error
	for i := range b.Ops {
		op := &b.Ops[i]
		switch op.Kind {
		case broker.OpPutSubscription:
			if op.Sub == nil {
				return fmt.Errorf("diskstore: op %d: OpPutSubscription without Sub", i)
			}
			e.buf = encodeSub(e.buf, op.Sub)
		case broker.OpEnqueue:
			if op.Delivery == nil {
				return fmt.Errorf("diskstore: op %d: OpEnqueue without Delivery", i)
			}
			if e.buf, err = encodeDelivery(e.buf, op.Delivery); err != nil {
				return err
			}
		case broker.OpSetInflight:
			if op.Delivery == nil {
				return fmt.Errorf("diskstore: op %d: OpSetInflight without Delivery", i)
			}
			e.buf = encodeInflight(e.buf, op.Delivery.PacketID, op.Delivery.State)
		case broker.OpPutInbound:
			e.buf = append(e.buf, formatV1)
		case broker.OpPutRetained:
			if op.Retained == nil {
				return fmt.Errorf("diskstore: op %d: OpPutRetained without Retained", i)
			}
			if e.buf, err = encodeRetained(e.buf, op.Retained); err != nil {
				return err
			}
		case broker.OpPutSession:
			if op.Session == nil {
				return fmt.Errorf("diskstore: op %d: OpPutSession without Session", i)
			}
			if op.Session.Will != nil { // checked here: the record is encoded under the lock
				if _, err := appendMessage(nil, op.Session.Will); err != nil {
					return err
				}
			}
		case broker.OpDeleteSession, broker.OpDeleteSubscription, broker.OpDequeue,
			broker.OpDeleteInbound, broker.OpDeleteRetained:
		default:
			return fmt.Errorf("diskstore: op %d: unknown kind %d", i, op.Kind)
		}
		e.offs = append(e.offs, len(e.buf))
	}
	return nil
}

// Commit implements broker.Store. Ops naming a ClientID without a session
// (no OpPutSession yet, or deleted) are ignored, except OpPutSession.
// While the store is unavailable (a full disk) it fails at once with the
// reason, an error wrapping ErrDiskFull or ErrFailed.
func (s *Store) Commit(b *broker.Batch, durable bool) error {
	return s.commit(b, durable, false)
}

// commit is Commit, and CommitRiding with ride.
func (s *Store) commit(b *broker.Batch, durable, ride bool) error {
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	ep := s.ep.Load()
	if err := ep.failure(); err != nil {
		return err
	}
	if b == nil || len(b.Ops) == 0 {
		return nil
	}
	e := encodedPool.Get().(*encoded)
	defer func() {
		if cap(e.buf) <= 1<<20 { // a huge batch's buffer is not kept
			encodedPool.Put(e)
		}
	}()
	if err := e.encodeValues(b); err != nil {
		return err
	}
	pb := ep.db.NewBatchWithSize(len(e.buf) + 32*len(b.Ops))
	r := requestPool.Get().(*request)
	r.b, r.ep, r.durable, r.ride, r.lastCid, r.undo = pb, ep, durable, ride, 0, r.undo[:0]

	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		_ = pb.Close() // never committed; Close only recycles it
		requestPool.Put(r)
		return ErrClosed
	}
	r.gen = s.mu.gen
	s.buildLocked(r, b, e)
	if pb.Empty() {
		s.mu.Unlock()
		_ = pb.Close() // nothing to write
		requestPool.Put(r)
		return nil
	}
	select {
	case s.reqs <- r: // under mu: the committer sees batches in map order
	case <-ep.failed:
		s.revertLocked(r.undo, r.gen)
		s.mu.Unlock()
		return ep.err
	}
	s.mu.Unlock()

	var err error
	select {
	case err = <-r.done:
	case <-ep.failed:
		select {
		case err = <-r.done: // completed as the epoch failed: its own outcome
		default:
			s.revert(r.undo, r.gen) // the failed engine commits nothing more
			return ep.err           // r stays with the committer, which may be wedged
		}
	}
	if err != nil {
		s.revert(r.undo, r.gen)
	}
	r.b, r.ep, r.undo = nil, nil, r.undo[:0]
	requestPool.Put(r)
	return err
}

// buildLocked writes b's ops into r.b, resolving and allocating cids.
func (s *Store) buildLocked(r *request, b *broker.Batch, e *encoded) {
	pb := r.b
	for i := range b.Ops {
		op := &b.Ops[i]
		if op.Kind == broker.OpPutRetained {
			e.key = retainedKey(e.key[:0], op.Retained.Topic)
			_ = pb.Set(e.key, e.value(i), nil) // batch writes fail only on a committed batch
			continue
		}
		if op.Kind == broker.OpDeleteRetained {
			e.key = retainedKey(e.key[:0], op.Topic)
			_ = pb.Delete(e.key, nil) // as above
			continue
		}
		cid, ok := s.mu.cids[op.ClientID]
		if op.Kind == broker.OpPutSession {
			if !ok {
				s.mu.lastCid++
				cid = s.mu.lastCid
				s.mu.cids[op.ClientID] = cid
				r.lastCid = cid
				r.undo = append(r.undo, undo{clientID: op.ClientID, cid: cid})
			}
			e.key = sessionKey(e.key[:0], op.ClientID)
			start := len(e.buf)
			e.buf, _ = encodeSession(e.buf, cid, op.Session) // its will encoded once already, without error
			_ = pb.Set(e.key, e.buf[start:], nil)            // as above
			continue
		}
		if !ok {
			continue // no such session
		}
		switch op.Kind {
		case broker.OpDeleteSession:
			delete(s.mu.cids, op.ClientID)
			r.undo = append(r.undo, undo{clientID: op.ClientID, prev: cid})
			e.key = sessionKey(e.key[:0], op.ClientID)
			_ = pb.Delete(e.key, nil) // as above
			for _, tag := range []byte{tagSub, tagQueue, tagInflight} {
				lo, hi := cidRange(tag, cid)
				_ = pb.DeleteRange(lo, hi, nil) // as above
			}
		case broker.OpPutSubscription:
			e.key = subKey(e.key[:0], cid, op.Sub.Filter)
			_ = pb.Set(e.key, e.value(i), nil) // as above
		case broker.OpDeleteSubscription:
			e.key = subKey(e.key[:0], cid, op.Filter)
			_ = pb.Delete(e.key, nil) // as above
		case broker.OpEnqueue:
			e.key = queueKey(e.key[:0], cid, op.Delivery.Seq)
			_ = pb.Set(e.key, e.value(i), nil) // as above
		case broker.OpSetInflight:
			e.key = outKey(e.key[:0], cid, op.Delivery.Seq)
			_ = pb.Set(e.key, e.value(i), nil) // as above
		case broker.OpDequeue:
			e.key = queueKey(e.key[:0], cid, op.Seq)
			_ = pb.Delete(e.key, nil) // as above
			e.key = outKey(e.key[:0], cid, op.Seq)
			_ = pb.Delete(e.key, nil) // as above
		case broker.OpPutInbound:
			e.key = inKey(e.key[:0], cid, op.PacketID)
			_ = pb.Set(e.key, e.value(i), nil) // as above
		case broker.OpDeleteInbound:
			e.key = inKey(e.key[:0], cid, op.PacketID)
			_ = pb.Delete(e.key, nil) // as above
		}
	}
}

// run is the committer: the only goroutine that writes to the engine
// after Open. It returns when Close closed s.reqs and every request
// before was completed.
func (s *Store) run() {
	defer close(s.stopped)
	var tick <-chan time.Time
	if s.mode == modeInterval {
		t := time.NewTicker(s.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	var (
		group []*request
		dirty bool // written without fsync since the last sync
		cur   committerEpoch
		rd    riders
	)
	defer rd.stop()
	for {
		var first *request
		select {
		case r, ok := <-s.reqs:
			if !ok {
				if dirty {
					rd.complete(s.syncWAL())
				}
				return
			}
			first = r
		case <-tick:
			if dirty {
				rd.complete(s.syncWAL())
				dirty = false
			}
			continue
		case <-rd.due():
			rd.complete(s.syncWAL())
			dirty = false
			continue
		}
		group = append(group[:0], first)
		size := len(first.b.Repr())
	drain:
		for len(group) < maxGroupReqs && size < maxGroupBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain // the closed channel is seen again at the top
				}
				group = append(group, r)
				size += len(r.b.Repr())
			default:
				break drain
			}
		}
		synced := s.commitGroup(group, size, &cur, &rd)
		dirty = !synced
		clear(group)
	}
}

// committerEpoch is the epoch the committer last committed in, with the
// value of M/"cid" it has persisted in that epoch's engine.
type committerEpoch struct {
	ep        *epoch
	persisted uint64
}

// commitGroup commits the requests of group made for the current, healthy
// epoch as one batch, after checking the reserve for its size bytes, and
// completes every waiter, but riding ones written without a sync (rd
// holds them until one); the others fail with their epoch's failure. It
// reports whether the commit was synced.
func (s *Store) commitGroup(group []*request, size int, cur *committerEpoch, rd *riders) (synced bool) {
	if ep := s.ep.Load(); ep.failure() != nil {
		// Failed: no need for the engine, which a recovery may hold
		// while it waits for room.
		for _, r := range group {
			r.done <- ep.err
		}
		rd.complete(ep.err)
		return false
	}
	s.eng.RLock()
	defer s.eng.RUnlock()
	ep := s.ep.Load()
	if ep != cur.ep {
		cur.ep, cur.persisted = ep, ep.persisted
	}
	err := ep.failure()
	if err == nil {
		if err = s.checkRoom(size); err != nil {
			s.fail(ep, err)
		}
	}
	live := group[:0]
	for _, r := range group {
		switch {
		case err != nil:
			r.done <- err
		case r.ep != ep:
			ferr := r.ep.failure() // an epoch is replaced only once it failed
			if ferr == nil {
				ferr = ErrFailed
			}
			r.done <- ferr
		default:
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return false
	}
	big := live[0].b
	hold := s.mode == modeAlways && rd.holding(time.Now(), s.rideRecent())
	// durable: the commit is synced; asked: a write that is durable and
	// not riding asked for it.
	var durable, asked bool
	var lastCid uint64
	for i, r := range live {
		if i > 0 {
			if err := big.Apply(r.b, nil); err != nil {
				panic(fmt.Sprintf("diskstore: merge batches: %v", err)) // our own batches: cannot be invalid
			}
			_ = r.b.Close() // Apply copied it
		}
		durable = durable || r.durable && !(r.ride && hold)
		asked = asked || r.durable && !r.ride
		lastCid = max(lastCid, r.lastCid)
	}
	if lastCid > cur.persisted {
		_ = big.Set(metaKey(metaCid), encodeMeta(lastCid), nil) // cannot fail before Commit
	}
	wo := pebble.NoSync
	if durable && s.mode == modeAlways {
		wo = pebble.Sync
	}
	err = big.Commit(wo)
	s.stats.groups.Add(1)
	s.stats.commits.Add(uint64(len(live)))
	if wo == pebble.Sync {
		s.stats.syncs.Add(1)
	}
	if ferr := ep.failure(); ferr != nil {
		err = ferr // Pebble reports a failed WAL write through Logger.Fatalf
	}
	if err != nil {
		err = fmt.Errorf("diskstore: commit: %w", err)
	} else {
		cur.persisted = max(cur.persisted, lastCid)
		_ = big.Close() // recycles the batch; committed batches close cleanly
	}
	synced = err == nil && wo == pebble.Sync
	if synced && asked {
		rd.synced(time.Now()) // durable writes flow: riders wait for the next sync
	}
	if err != nil || synced {
		rd.complete(err) // written before this commit: durable with it, or not known to be
	}
	for _, r := range live {
		if r.ride && err == nil && !synced {
			rd.add(r, s.rideWait())
			continue
		}
		r.done <- err
	}
	return synced
}

// revert undoes the map changes of a failed commit (see revertLocked).
// The waiter calls it, not the committer, which never takes mu.
func (s *Store) revert(u []undo, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revertLocked(u, gen)
}

// revertLocked undoes the map changes of a failed commit, latest first,
// where a later batch did not change the entry again, unless the map was
// read again from a reopened engine since (gen), which is then the truth.
func (s *Store) revertLocked(u []undo, gen uint64) {
	if gen != s.mu.gen {
		return
	}
	for j := len(u) - 1; j >= 0; j-- {
		cur, ok := s.mu.cids[u[j].clientID]
		switch {
		case u[j].cid != 0 && ok && cur == u[j].cid:
			delete(s.mu.cids, u[j].clientID)
		case u[j].cid == 0 && !ok:
			s.mu.cids[u[j].clientID] = u[j].prev
		}
	}
}

// syncWAL makes everything committed so far durable; it returns why it
// could not.
func (s *Store) syncWAL() error {
	s.eng.RLock()
	defer s.eng.RUnlock()
	ep := s.ep.Load()
	if err := ep.failure(); err != nil {
		return err
	}
	s.stats.syncs.Add(1)
	if err := ep.db.LogData(nil, pebble.Sync); err != nil {
		s.log.Error("diskstore: sync WAL", "err", err)
		return fmt.Errorf("diskstore: sync WAL: %w", err)
	}
	if err := ep.failure(); err != nil {
		return err // Pebble reports a failed WAL write through Logger.Fatalf
	}
	return nil
}
