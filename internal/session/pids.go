package session

// Packet identifiers of outbound QoS 1/2 deliveries.
//
// A stored QoS 2 delivery (Seq != 0) is always sent under the packet id
// its Seq gives (PacketIDFor), in every life of the broker: after a crash
// the broker sends it again under the id the client may hold for it, and
// the client, which holds that id until PUBREL, recognises the duplicate
// [MQTT-4.3.3-2] [MQTT-4.4.0-1]. Nothing has to be written before the
// PUBLISH goes out. Two rules keep the id unambiguous:
//   - the delivery waits, first in its queue, while its id is held by
//     another delivery in flight;
//   - an id freed by PUBCOMP cools until the delivery's removal from the
//     store is durable (Cooled): otherwise a crash could bring back the
//     finished delivery, whose PUBREL the broker would send again, and the
//     client would take it for the PUBREL of the newer delivery sent under
//     the same id, release the id, and deliver the newer one twice when it
//     is sent again.
//
// In a persistent session the ids 1..storedIDs are for stored QoS 2
// deliveries only; every other delivery takes the next free id above
// them (nextPIDLocked), so that no other delivery holds the id a stored
// one needs for long, and the window of a persistent session is at most
// storedIDs, so that one of those is always free.

// storedIDs is how many packet ids a persistent session keeps for its
// stored QoS 2 deliveries (1..storedIDs).
const storedIDs = 32767

// PacketIDFor returns the packet id a stored QoS 2 delivery with Seq seq
// (non-zero) is sent under.
func PacketIDFor(seq uint64) uint16 { return uint16((seq-1)%storedIDs + 1) }

// derived reports whether d's packet id is derived from its Seq.
func derived(d *Delivery) bool { return d.Seq != 0 && d.QoS == 2 }

// pidForLocked returns the packet id d is sent under; the caller checked
// that d is admissible.
func (s *Session) pidForLocked(d *Delivery) uint16 {
	if derived(d) {
		return PacketIDFor(d.Seq)
	}
	return s.nextPIDLocked()
}

// windowLocked is how many QoS 1/2 messages may be in flight.
func (s *Session) windowLocked() int {
	if s.persistent.Load() {
		return min(s.mu.maxInflight, storedIDs)
	}
	return s.mu.maxInflight
}

// admissibleLocked reports whether the QoS 1/2 delivery d may enter the
// inflight window now: the window has room [MQTT-3.3.4-9] and, for a
// stored QoS 2 delivery, its packet id is free.
func (s *Session) admissibleLocked(d *Delivery) bool {
	if len(s.mu.inflight) >= s.windowLocked() {
		return false
	}
	if derived(d) {
		return s.pidFreeLocked(PacketIDFor(d.Seq))
	}
	return len(s.mu.inflight)+len(s.mu.cooling) < 65535
}

// pidFreeLocked reports whether no delivery holds pid, in flight or
// cooling.
func (s *Session) pidFreeLocked(pid uint16) bool {
	if _, used := s.mu.inflight[pid]; used {
		return false
	}
	_, cooling := s.mu.cooling[pid]
	return !cooling
}

// nextPIDLocked returns a free non-zero packet identifier [MQTT-2.3.1-1]
// [MQTT-2.3.1-2], above storedIDs in a persistent session. The caller
// checked admissibleLocked, so one is free.
func (s *Session) nextPIDLocked() uint16 {
	low := uint16(1)
	if s.persistent.Load() {
		low = storedIDs + 1
	}
	for {
		s.mu.nextPID++
		if s.mu.nextPID < low {
			s.mu.nextPID = low
		}
		if s.pidFreeLocked(s.mu.nextPID) {
			return s.mu.nextPID
		}
	}
}

// coolLocked keeps pid, just freed by the PUBCOMP of the stored delivery
// seq, from being given again until Cooled.
func (s *Session) coolLocked(pid uint16, seq uint64) {
	if pid != PacketIDFor(seq) {
		return // an id given before ids were derived (an older store)
	}
	if s.mu.cooling == nil {
		s.mu.cooling = make(map[uint16]uint64)
	}
	s.mu.cooling[pid] = seq
}

// Cooled frees pid once the removal of the stored delivery seq, which
// PUBCOMP completed, is durable. It reports whether pid was cooling for
// seq (the writer may be waiting for it).
func (s *Session) Cooled(pid uint16, seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if got, ok := s.mu.cooling[pid]; !ok || got != seq {
		return false
	}
	delete(s.mu.cooling, pid)
	if len(s.mu.cooling) == 0 {
		s.mu.cooling = nil
	}
	return true
}

// WaitsForCooling reports whether the first queued delivery waits for its
// packet id to cool (see Cooled): then only the durable removal of the
// delivery that last held the id lets the queue move on.
func (s *Session) WaitsForCooling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.cooling) == 0 || len(s.mu.retained) > 0 || len(s.mu.resend) > 0 {
		return false
	}
	head := s.mu.q.peek()
	if head == nil || !derived(head) {
		return false
	}
	_, cooling := s.mu.cooling[PacketIDFor(head.Seq)]
	return cooling
}

// CoolingID is a packet id cooling (see Cooled) and its delivery's Seq.
type CoolingID struct {
	PacketID uint16
	Seq      uint64
}

// Cooling returns the packet ids still cooling: their removals were not
// confirmed durable (a write failed, or the connection ended first).
func (s *Session) Cooling() []CoolingID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.cooling) == 0 {
		return nil
	}
	out := make([]CoolingID, 0, len(s.mu.cooling))
	for pid, seq := range s.mu.cooling {
		out = append(out, CoolingID{PacketID: pid, Seq: seq})
	}
	return out
}
