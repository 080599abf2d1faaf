package session

import "time"

// SetPersistent marks whether the session's QoS 1/2 deliveries are kept in
// the broker's store. The session itself only carries the flag and the
// sequence numbers; the broker does the writing.
func (s *Session) SetPersistent(p bool) { s.persistent.Store(p) }

// Persistent reports the flag SetPersistent set.
func (s *Session) Persistent() bool { return s.persistent.Load() }

// NextSeq returns a new, increasing sequence number for a stored delivery.
func (s *Session) NextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.nextSeq++
	return s.mu.nextSeq
}

// RestoreState is where a restored delivery stood when the broker stopped.
type RestoreState byte

// The states of a restored delivery.
const (
	RestoreQueued       RestoreState = iota // not sent
	RestoreAwaitPuback                      // QoS 1 sent
	RestoreAwaitPubrec                      // QoS 2 sent
	RestoreAwaitPubcomp                     // QoS 2 received by the client, PUBREL owed
)

// Restore puts back a stored delivery, at startup and in Seq order, and
// returns the Seq of a delivery it found stale (0: none), whose stored
// copy the caller removes.
//
// An inflight one goes in the inflight window under its packet id, to be
// sent again when a connection attaches [MQTT-4.4.0-1]. A record under
// the id of an earlier inflight one makes that one stale: an id is given
// again only once its delivery ended, so its removal was lost. (An
// earlier one taken from the queue as maybe sent cannot have ended; it
// goes back to the queue instead, never lost.)
//
// A queued one goes at the end of the queue (outside the limits: it was
// accepted once), except a QoS 2 one among the first window of the
// session's deliveries, before any went to the queue: its packet id is
// derived from its Seq and the broker writes nothing before sending it
// (pids.go), so it may have been sent already. It goes in the inflight
// window as sent, under its id, and is sent again with DUP
// [MQTT-3.3.1-1].
func (s *Session) Restore(d Delivery, pid uint16, st RestoreState, window int) (stale uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Seq > s.mu.nextSeq {
		s.mu.nextSeq = d.Seq
	}
	fromQueue := st == RestoreQueued || pid == 0
	if fromQueue {
		if s.mu.restoring || !derived(&d) || s.mu.restoredSent >= window || !s.pidFreeLocked(PacketIDFor(d.Seq)) {
			s.mu.restoring = true
			s.mu.q.push(d)
			return 0
		}
		pid, st = PacketIDFor(d.Seq), RestoreAwaitPubrec
		s.mu.restoredSent++
	}
	f := inflight{d: d, seq: d.Seq, maybe: fromQueue}
	switch st {
	case RestoreAwaitPuback:
		f.state = awaitPuback
	case RestoreAwaitPubrec:
		f.state = awaitPubrec
	default:
		f.state = awaitPubcomp
		f.d = Delivery{}
	}
	if f.d.Msg != nil {
		s.chargeLocked(&f)
	}
	if s.mu.inflight == nil {
		s.mu.inflight = make(map[uint16]inflight)
	}
	if old, ok := s.mu.inflight[pid]; ok {
		s.releaseLocked(&old)
		if old.maybe {
			s.mu.restoring = true
			s.mu.q.push(old.d)
		} else {
			stale = old.seq
		}
		o := s.mu.order[:0]
		for _, p := range s.mu.order {
			if p != pid {
				o = append(o, p)
			}
		}
		s.mu.order = o
	}
	s.mu.inflight[pid] = f
	s.mu.order = append(s.mu.order, pid)
	if pid > s.mu.nextPID {
		s.mu.nextPID = pid
	}
	return stale
}

// RestoreInbound puts back an inbound QoS 2 packet id awaiting PUBREL,
// with its write id (SetInboundWrite; 0 for none).
func (s *Session) RestoreInbound(pid uint16, write uint64) {
	s.ReceiveQoS2(pid)
	s.SetInboundWrite(pid, write)
}

// SetQuota makes the session's queue count against q (a tenant's shared
// bound; nil for none), moving what is queued and in flight from the
// previous quota.
func (s *Session) SetQuota(q *Quota) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.mu.q.quota
	if old == q {
		return
	}
	n, size := s.mu.q.len(), s.mu.q.bytes
	if old != nil {
		old.add(-n, -size-s.mu.inflightBytes)
	}
	if q != nil {
		q.add(n, size+s.mu.inflightBytes)
	}
	s.mu.q.quota = q
	s.limits.Quota = q
}

// DropExpired removes from the queue the messages whose expiry has passed
// at now (their onward delivery has not started [MQTT-3.3.2-5]) and
// returns how many it removed and the Seqs of the stored ones.
func (s *Session) DropExpired(now time.Time) (n int, seqs []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.q.expiring == 0 { // nothing in the queue can expire: no copy
		return 0, nil
	}
	keep := queue{quota: s.mu.q.quota}
	for s.mu.q.len() > 0 {
		d := s.mu.q.pop()
		if !d.Msg.Expired(now) {
			keep.push(d)
			continue
		}
		n++
		if d.Seq != 0 {
			seqs = append(seqs, d.Seq)
		}
	}
	s.mu.q = keep
	return n, seqs
}

// Discard lets the session go: what is queued and in flight is dropped
// and stops counting against the bounds (the tenant's quota, the
// broker's budget), and nothing is queued any more. The broker calls it
// when it forgets the session (a clean session's end, expiry, a clean
// start replacing it).
func (s *Session) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.discarded = true
	for s.mu.q.len() > 0 {
		s.mu.q.pop()
	}
	for pid, f := range s.mu.inflight {
		s.releaseLocked(&f)
		delete(s.mu.inflight, pid)
	}
	s.mu.order, s.mu.orderHead, s.mu.resend = nil, 0, nil
	s.mu.retained = nil
	s.mu.cooling = nil
}

// NoteSeq records that a stored delivery with Seq seq was made for the
// session elsewhere than NextSeq (a cluster's message log gives the Seq:
// the log's sequence), so that Seen reports it and NextSeq stays above.
func (s *Session) NoteSeq(seq uint64) {
	s.mu.Lock()
	if seq > s.mu.nextSeq {
		s.mu.nextSeq = seq
	}
	s.mu.Unlock()
}

// LastSeq returns the highest Seq given (NextSeq) or noted (NoteSeq,
// Restore) so far; a delivery at or below it was already made.
func (s *Session) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.nextSeq
}
