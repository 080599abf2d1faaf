package broker

// ParkState reports, for the connection of the online client id, the
// descriptor its registration in the parker's set is under (-1 for none),
// the connection's descriptor now, and whether it is parked.
func (b *Broker) ParkState(id string) (regFD, fd int, parked bool) {
	b.mu.Lock()
	c := b.mu.clients[id]
	b.mu.Unlock()
	if c == nil {
		return -1, -1, false
	}
	return c.tr.State()
}
