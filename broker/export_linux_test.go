package broker

// ParkState reports, for the connection of the online client id, the
// descriptor its registration in the parker's set is under (-1 for none),
// the connection's descriptor now, and whether it is parked.
func (b *Broker) ParkState(id string) (regFD, fd int, parked bool) {
	b.mu.Lock()
	c := b.mu.clients[id]
	b.mu.Unlock()
	if c == nil || c.raw == nil {
		return -1, -1, false
	}
	fd = -1
	_ = c.raw.Control(func(f uintptr) { fd = int(f) })
	p := b.parker
	p.mu.Lock()
	defer p.mu.Unlock()
	regFD = -1
	if c.parkReg {
		regFD = c.parkFD
	}
	parked = c.parkFD < len(p.mu.conns) && p.mu.conns[c.parkFD] == c
	return regFD, fd, parked
}
