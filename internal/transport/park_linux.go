//go:build linux

package transport

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Parker lets idle connections wait without a goroutine: a parked Conn's
// descriptor waits in the parker's epoll set (one-shot) and its owner is
// unparked when bytes arrive, when its deadline passes, or when it is
// woken. An idle connection then costs its heap state, not a parked
// goroutine's stack. The set and its goroutine are made on first use;
// Stop ends them.
type Parker struct {
	log  *slog.Logger
	once sync.Once

	parked     atomic.Int64  // Conns parked now
	promotions atomic.Uint64 // raw Conns promoted (fdMoved)

	mu struct {
		sync.Mutex
		set     *pollSet // nil until started, and after Stop
		stopped bool
		done    chan struct{} // closed when the loop has returned; nil: no loop
		conns   []*Conn       // parked, by file descriptor: a dense index, no hashing
	}
}

// NewParker returns a parker that logs its failures to log.
func NewParker(log *slog.Logger) *Parker { return &Parker{log: log} }

// Parked is the number of connections parked now.
func (p *Parker) Parked() int64 { return p.parked.Load() }

// Promotions is the number of raw connections that became netpoller
// connections (to wait for a read or a write) while their Conn was open.
func (p *Parker) Promotions() uint64 { return p.promotions.Load() }

// start creates the epoll set and its goroutine on first use.
func (p *Parker) start() {
	p.once.Do(func() {
		set, err := newPollSet("petrel-parker")
		if err != nil {
			p.log.Warn("idle connections keep their goroutine: no epoll set", "err", err)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.mu.stopped { // Stop came first: no loop to end later
			_ = set.file.Close() // never used
			return
		}
		p.mu.set, p.mu.done = set, make(chan struct{})
		go p.loop(set, p.mu.done) // Stop waits for it
	})
}

// available reports whether connections can park (the set works and the
// parker has not stopped).
func (p *Parker) available() bool {
	p.start()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.set != nil && !p.mu.stopped
}

func (p *Parker) park(c *Conn, deadline time.Time) bool {
	p.start()
	// Inside Control the descriptor cannot be closed and reused. The
	// result is this call's own: once registered, c may be unparked by
	// another goroutine at once and park again, so nothing of c says
	// whether this call succeeded.
	parked := false
	err := c.raw.Control(func(fd uintptr) { parked = p.register(c, int(fd), deadline) })
	if err != nil || !parked {
		return false
	}
	return true
}

// register adds c's descriptor fd to the set, armed for one event, and
// arms c's timer for deadline (zero: none), unless the parker stopped.
// The timer is armed under p.mu, with the registration: once registered
// c may be unparked (wake stops the timer under p.mu) and parked again by
// another goroutine at once.
func (p *Parker) register(c *Conn, fd int, deadline time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.set == nil || p.mu.stopped {
		return false
	}
	c.parked.Store(true)
	p.putLocked(fd, c)
	// A descriptor stays in the set, disarmed, after its one-shot
	// event (and leaves it when closed): parking again re-arms it.
	op := syscall.EPOLL_CTL_ADD
	if c.reg == int32(fd)+1 {
		op = syscall.EPOLL_CTL_MOD
	}
	err := p.armLocked(op, fd)
	if err == syscall.ENOENT && op == syscall.EPOLL_CTL_MOD {
		err = p.armLocked(syscall.EPOLL_CTL_ADD, fd)
	}
	if err != 0 {
		p.mu.conns[fd] = nil
		c.parked.Store(false)
		return false
	}
	c.reg = int32(fd) + 1
	p.parked.Add(1)
	if !deadline.IsZero() {
		if c.timer == nil {
			c.timer = time.AfterFunc(time.Until(deadline), func() { p.wake(c) })
		} else {
			c.timer.Reset(time.Until(deadline))
		}
	}
	return true
}

// putLocked records c as parked under fd.
func (p *Parker) putLocked(fd int, c *Conn) {
	if fd >= len(p.mu.conns) {
		// Grown to its capacity: what lies past the old length is nil.
		grown := slices.Grow(p.mu.conns, fd+1-len(p.mu.conns))
		p.mu.conns = grown[:cap(grown)]
	}
	p.mu.conns[fd] = c
}

// armLocked adds (op ADD) or re-arms (op MOD) fd in the set for one event.
func (p *Parker) armLocked(op, fd int) syscall.Errno {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	return epollCtl(p.mu.set.fd, op, fd, &ev)
}

// wake unparks c if it is parked.
func (p *Parker) wake(c *Conn) {
	if !c.parked.CompareAndSwap(true, false) {
		return
	}
	p.parked.Add(-1)
	p.mu.Lock()
	if fd := int(c.reg) - 1; fd >= 0 && fd < len(p.mu.conns) && p.mu.conns[fd] == c {
		// Its registration stays: disarmed once its event fired, and an
		// event still to come for a reader that runs again is ignored.
		p.mu.conns[fd] = nil
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	p.mu.Unlock()
	c.owner.Unpark()
}

// loop waits, in the netpoller, until the set has events, takes them
// without blocking, and wakes their connections; until Stop closes the
// set (or the wait fails).
func (p *Parker) loop(set *pollSet, done chan struct{}) {
	defer close(done)
	events := make([]syscall.EpollEvent, 128)
	ready := make([]*Conn, 0, len(events))
	var n int
	for {
		err := set.rc.Read(func(uintptr) bool {
			var werr syscall.Errno
			n, werr = epollWaitNow(set.fd, events)
			if werr != 0 { // EINTR: nothing taken, look again
				n = 0
				return werr != syscall.EINTR
			}
			return n > 0 // none yet: wait for the set to become readable
		})
		if err != nil {
			p.fail(err)
			return
		}
		p.mu.Lock()
		for i := range n {
			if fd := int(events[i].Fd); fd < len(p.mu.conns) && p.mu.conns[fd] != nil {
				ready = append(ready, p.mu.conns[fd])
			}
		}
		p.mu.Unlock()
		for i, c := range ready {
			p.wake(c)
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

// fail ends parking after the loop's wait failed: unless Stop closed the
// set, every parked connection is unparked and none parks again.
func (p *Parker) fail(err error) {
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		return
	}
	p.mu.stopped = true
	var parked []*Conn
	for _, c := range p.mu.conns {
		if c != nil {
			parked = append(parked, c)
		}
	}
	p.mu.Unlock()
	p.log.Error("idle connections keep their goroutine from now on: waiting on the epoll set failed", "err", err)
	for _, c := range parked {
		p.wake(c)
	}
}

// Stop closes the set and waits for the parker's goroutine to return. No
// connection parks after it; those still parked are woken by their close
// (Wake).
func (p *Parker) Stop() {
	p.mu.Lock()
	p.mu.stopped = true
	done := p.mu.done
	if p.mu.set != nil {
		// Closing the set ends the loop's wait; an error would mean it is
		// closed already.
		_ = p.mu.set.file.Close()
		p.mu.set = nil
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// moved follows c's descriptor from old to new (fdMoved).
func (p *Parker) moved(c *Conn, old, new int) {
	p.promotions.Add(1)
	if p.move(c, old, new) {
		return
	}
	// It cannot wait in the set: its reader goes on with a goroutine.
	p.wake(c)
}

// move moves c's registration; false when c was parked and could
// not be registered under new.
func (p *Parker) move(c *Conn, old, new int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.reg != int32(old)+1 || p.mu.set == nil {
		return true
	}
	// The socket stays open under new, so closing old would leave the
	// registration in the set.
	_ = epollCtl(p.mu.set.fd, syscall.EPOLL_CTL_DEL, old, nil)
	c.reg = 0
	if old >= len(p.mu.conns) || p.mu.conns[old] != c {
		return true // not parked: the next park registers new
	}
	p.mu.conns[old] = nil
	if p.armLocked(syscall.EPOLL_CTL_ADD, new) != 0 {
		return false
	}
	p.putLocked(new, c)
	c.reg = int32(new) + 1
	return true
}

// State reports, for tests and diagnostics, the descriptor c's
// registration in the parker's set is under (-1 for none), c's descriptor
// now (-1 when not raw), and whether c is parked.
func (c *Conn) State() (regFD, fd int, parked bool) {
	if c.raw == nil {
		return -1, -1, false
	}
	fd = -1
	_ = c.raw.Control(func(f uintptr) { fd = int(f) })
	regFD = -1
	if c.p == nil {
		return regFD, fd, false
	}
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	regFD = int(c.reg) - 1
	parked = regFD >= 0 && regFD < len(c.p.mu.conns) && c.p.mu.conns[regFD] == c
	return regFD, fd, parked
}
