package broker

// GoroutineJobs reports how many jobs the broker's goroutine pool ran
// for writers (writeLoop, writeRest) and for cleanups after an inline
// reader (taskEnd).
func (b *Broker) GoroutineJobs() (writers, ends uint64) {
	return b.gor.runs[taskWrite].Load() + b.gor.runs[taskWriteRest].Load(), b.gor.runs[taskEnd].Load()
}

// CoolingIDs returns the packet ids of session key still cooling (see
// session.Session.Cooled), nil when there is no such session.
func (b *Broker) CoolingIDs(key string) []uint16 {
	b.mu.Lock()
	s := b.mu.sessions[key]
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	var ids []uint16
	for _, c := range s.Cooling() {
		ids = append(ids, c.PacketID)
	}
	return ids
}
