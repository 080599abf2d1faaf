package listener

import "time"

// HandshakeStats counts what a TLS listener (tls, wss) did with handshakes
// it did not complete, since it was opened.
type HandshakeStats struct {
	// InProgress is the number of unfinished handshakes now.
	InProgress int
	// Evicted counts unfinished handshakes closed to make room for a new
	// connection at MaxHandshakes.
	Evicted uint64
	// RefusedPerAddress counts connections closed on arrival because their
	// address had MaxHandshakesPerAddress unfinished handshakes.
	RefusedPerAddress uint64
	// HelloTimeouts counts connections closed for sending no complete
	// ClientHello (and PROXY header) within HelloTimeout.
	HelloTimeouts uint64
	// HandshakeTimeouts counts connections closed for not finishing the
	// rest of the handshake within HandshakeTimeout.
	HandshakeTimeouts uint64
}

// floodCounter is one kind of dropped handshake: its total and its count
// since the last report.
type floodCounter struct{ total, window uint64 }

// floodReport aggregates dropped handshakes into rate-limited WARN lines.
// handshakeListener.mu guards it.
type floodReport struct {
	evicted, refused, helloTimeouts, handshakeTimeouts floodCounter

	next  time.Time   // earliest time of the next report
	timer *time.Timer // a report scheduled for next; nil when none
}

// HandshakeStats returns the listener's handshake counters; zero for a
// listener without TLS.
func (l *Listener) HandshakeStats() HandshakeStats {
	h, ok := l.inner.(*handshakeListener)
	if !ok {
		return HandshakeStats{}
	}
	return h.stats()
}

func (h *handshakeListener) stats() HandshakeStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &h.mu.report
	return HandshakeStats{
		InProgress:        h.mu.table.len(),
		Evicted:           r.evicted.total,
		RefusedPerAddress: r.refused.total,
		HelloTimeouts:     r.helloTimeouts.total,
		HandshakeTimeouts: r.handshakeTimeouts.total,
	}
}

// noteLocked counts one dropped handshake in c, a counter of
// h.mu.report. An eviction or a refusal (the listener is under pressure)
// is reported at once when no report was made for h.every, else by a
// timer at the end of that time: one line per interval however many
// connections, and no timer while nothing happens. Timeouts alone (a
// scanner's routine) are counted, not reported.
func (h *handshakeListener) noteLocked(c *floodCounter, now time.Time) {
	c.total++
	c.window++
	r := &h.mu.report
	if c != &r.evicted && c != &r.refused {
		return
	}
	if r.timer != nil || h.mu.closed {
		return // the next report will say it
	}
	wait := r.next.Sub(now)
	if wait < 0 {
		wait = 0 // the last report is old: this one goes out at once
	}
	// The callers (the accept loop, handshake goroutines) are counted in
	// h.wg, so it is above zero here and Close waits for the timer.
	h.wg.Add(1)
	r.timer = time.AfterFunc(wait, func() {
		defer h.wg.Done()
		h.flushReport()
	})
}

// flushReport logs, at WARN, the handshakes dropped since the last report
// when any was evicted or refused, and starts a new interval.
func (h *handshakeListener) flushReport() {
	h.mu.Lock()
	r := &h.mu.report
	r.timer = nil
	r.next = time.Now().Add(h.every)
	evicted, refused := r.evicted.window, r.refused.window
	hello, hs := r.helloTimeouts.window, r.handshakeTimeouts.window
	r.evicted.window, r.refused.window = 0, 0
	r.helloTimeouts.window, r.handshakeTimeouts.window = 0, 0
	inProgress := h.mu.table.len()
	busiest, busiestN := h.mu.table.busiest()
	h.mu.Unlock()
	if evicted == 0 && refused == 0 {
		return
	}
	attrs := []any{
		"evicted", evicted, "refused_per_address", refused,
		"hello_timeouts", hello, "handshake_timeouts", hs,
		"in_progress", inProgress,
	}
	if busiestN > 1 {
		attrs = append(attrs, "busiest_address", busiest.String(), "busiest_in_progress", busiestN)
	}
	h.log.Warn("unfinished TLS handshakes dropped under load", attrs...)
}
