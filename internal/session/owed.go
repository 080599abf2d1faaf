package session

// DropOwed removes the deliveries the session still owes its client whose
// topic verdict maps to false: queued messages, retained messages owed to
// new subscriptions and, while the session is offline, the unacknowledged
// QoS 1/2 messages it would send again when a connection attaches
// (messages sent on the current connection stay: their packet ids are the
// client's until it acknowledges them). A delivery whose topic is not in
// verdict is kept, and its topic returned in unknown (once), for the caller
// to decide and call again. dropped counts the removed deliveries; seqs
// lists the stored ones (Seq != 0) among them. verdict is only read.
func (s *Session) DropOwed(verdict map[string]bool) (dropped int, seqs []uint64, unknown []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seen map[string]struct{}
	// denied reports whether d goes, noting a topic verdict does not know.
	denied := func(d *Delivery) bool {
		ok, known := verdict[d.Msg.Topic]
		if known {
			return !ok
		}
		if _, dup := seen[d.Msg.Topic]; !dup {
			if seen == nil {
				seen = make(map[string]struct{})
			}
			seen[d.Msg.Topic] = struct{}{}
			unknown = append(unknown, d.Msg.Topic)
		}
		return false
	}
	drop := func(d *Delivery) {
		dropped++
		if d.Seq != 0 {
			seqs = append(seqs, d.Seq)
		}
	}

	if n := len(s.mu.retained); n > 0 {
		kept := s.mu.retained[:0]
		for i := range s.mu.retained {
			if d := &s.mu.retained[i]; denied(d) {
				drop(d)
			} else {
				kept = append(kept, *d)
			}
		}
		clear(s.mu.retained[len(kept):n]) // release the dropped messages
		s.mu.retained = kept
		if len(kept) == 0 {
			s.mu.retained = nil
		}
	}

	// The queue is looked at in place first: one with nothing to drop is
	// not copied.
	cut := false
	for seg := s.mu.q.head; seg != nil; seg = seg.next {
		for i := seg.r; i < seg.w; i++ {
			if denied(&seg.buf[i]) {
				cut = true
			}
		}
	}
	if cut {
		kept := queue{quota: s.mu.q.quota}
		for s.mu.q.len() > 0 {
			d := s.mu.q.pop()
			if ok, known := verdict[d.Msg.Topic]; known && !ok {
				drop(&d)
			} else {
				kept.push(d)
			}
		}
		s.mu.q = kept
	}

	if !s.mu.online {
		removed := false
		for pid, f := range s.mu.inflight {
			if f.state == awaitPubcomp {
				continue // the client has the message: only PUBREL is owed
			}
			if denied(&f.d) {
				drop(&f.d)
				delete(s.mu.inflight, pid)
				removed = true
			}
		}
		if removed {
			s.compactOrderLocked()
		}
	}
	return dropped, seqs, unknown
}
