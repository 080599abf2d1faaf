//go:build linux

package broker

import (
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// parker lets idle plain-TCP connections wait without a goroutine: their
// file descriptor waits in a broker-owned epoll set (one-shot) and a reader
// goroutine is started again when bytes arrive, when the keepalive
// deadline passes, or when the connection is being closed. An idle
// connection then costs its heap state, not a parked goroutine's stack.
//
// The set's own descriptor waits in Go's netpoller (an epoll set is
// readable while it has events), so the loop holds no thread in a blocking
// epoll_wait: a goroutine blocked in a system call keeps its P until the
// runtime's monitor takes it back, and each such hand-off kept the monitor
// waking every 20 us.
type parker struct {
	b    *Broker
	once sync.Once
	mu   struct {
		sync.Mutex
		epfd    int
		file    *os.File // epfd, as the netpoller waits on it
		stopped bool
		conns   []*conn // by file descriptor: a dense index, no hashing
	}
}

func newParker(b *Broker) *parker {
	p := &parker{b: b}
	p.mu.epfd = -1
	return p
}

// start creates the epoll set and its goroutine on first use.
func (p *parker) start() bool {
	p.once.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.b.log.Warn("idle connections keep their goroutine: epoll unavailable", "err", err)
			return
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			_ = syscall.Close(fd) // never used
			p.b.log.Warn("idle connections keep their goroutine: epoll set not pollable", "err", err)
			return
		}
		f := os.NewFile(uintptr(fd), "petrel-parker") // non-blocking: registered with the netpoller
		rc, err := f.SyscallConn()
		if err != nil {
			_ = f.Close() // never used
			p.b.log.Warn("idle connections keep their goroutine: epoll set not pollable", "err", err)
			return
		}
		p.mu.Lock()
		if p.mu.stopped { // Shutdown came first: no loop to end later
			p.mu.Unlock()
			_ = f.Close() // never used
			return
		}
		p.mu.epfd, p.mu.file = fd, f
		// Counted under the lock: stop, which Shutdown calls before it
		// waits, either comes after this or kept the loop from starting.
		p.b.wg.Add(1)
		p.mu.Unlock()
		go p.loop(rc, fd)
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.epfd >= 0 && !p.mu.stopped
}

// available reports whether connections can park (epoll works and the
// broker is not stopping).
func (p *parker) available() bool { return p.start() }

// park registers c's descriptor, reached through raw, for one readiness
// event and arms the keepalive timer. It reports false when c must go on
// reading with its goroutine (parking unavailable, connection closed).
func (p *parker) park(c *conn, raw syscall.RawConn, deadline time.Time) bool {
	if !p.start() {
		return false
	}
	// Inside Control the descriptor cannot be closed and reused. The
	// result is this call's own: once registered, c may be resumed by
	// another goroutine at once and park again, so nothing of c says
	// whether this call succeeded.
	parked := false
	err := raw.Control(func(fd uintptr) { parked = p.register(c, fd) })
	if err != nil || !parked {
		return false
	}
	if !deadline.IsZero() {
		c.mu.Lock()
		if c.mu.parkTimer == nil {
			c.mu.parkTimer = time.AfterFunc(time.Until(deadline), func() { p.wake(c) })
		} else {
			c.mu.parkTimer.Reset(time.Until(deadline))
		}
		c.mu.Unlock()
	}
	return true
}

// register adds c's descriptor fd to the set, armed for one event, unless
// the parker stopped.
func (p *parker) register(c *conn, fd uintptr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return false
	}
	c.parkFD = int(fd)
	c.parked.Store(true)
	if int(fd) >= len(p.mu.conns) {
		// Grown to its capacity: what lies past the old length is nil.
		grown := slices.Grow(p.mu.conns, int(fd)+1-len(p.mu.conns))
		p.mu.conns = grown[:cap(grown)]
	}
	p.mu.conns[int(fd)] = c
	// A descriptor stays in the set, disarmed, after its one-shot
	// event (and leaves it when closed): parking again re-arms it.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	op := syscall.EPOLL_CTL_ADD
	if c.parkReg {
		op = syscall.EPOLL_CTL_MOD
	}
	err := epollCtl(p.mu.epfd, op, int(fd), &ev)
	if err == syscall.ENOENT && op == syscall.EPOLL_CTL_MOD {
		err = epollCtl(p.mu.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if err != 0 {
		p.mu.conns[int(fd)] = nil
		c.parked.Store(false)
		return false
	}
	c.parkReg = true
	p.b.stats.parked.Add(1)
	return true
}

// wake resumes c if it is parked: its reader goroutine starts again.
func (p *parker) wake(c *conn) {
	if !c.parked.CompareAndSwap(true, false) {
		return
	}
	p.b.stats.parked.Add(-1)
	p.mu.Lock()
	if c.parkFD < len(p.mu.conns) && p.mu.conns[c.parkFD] == c {
		// Its registration stays: disarmed once its event fired, and an
		// event still to come for a reader that runs again is ignored.
		p.mu.conns[c.parkFD] = nil
	}
	p.mu.Unlock()
	c.mu.Lock()
	if c.mu.parkTimer != nil {
		c.mu.parkTimer.Stop()
	}
	c.mu.Unlock()
	c.woken = true // read by the resumed reader, which starts after this
	p.b.gor.run(job{c, taskResume})
}

// loop waits, in the netpoller, until the set has events, takes them
// without blocking, and wakes their connections; until stop.
func (p *parker) loop(rc syscall.RawConn, epfd int) {
	defer p.b.wg.Done()
	events := make([]syscall.EpollEvent, 128)
	ready := make([]*conn, 0, len(events))
	var n int
	for {
		err := rc.Read(func(uintptr) bool {
			var werr syscall.Errno
			n, werr = epollWaitNow(epfd, events)
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

// fail ends parking after the loop's wait failed: unless stop closed the
// set, every parked connection gets its reader goroutine back and no
// connection parks again.
func (p *parker) fail(err error) {
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		return
	}
	p.mu.stopped = true
	var parked []*conn
	for _, c := range p.mu.conns {
		if c != nil {
			parked = append(parked, c)
		}
	}
	p.mu.Unlock()
	p.b.log.Error("idle connections keep their goroutine from now on: waiting on the epoll set failed", "err", err)
	for _, c := range parked {
		p.wake(c)
	}
}

// stop closes the set, which ends the loop; connections still parked are
// woken by their close.
func (p *parker) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return
	}
	p.mu.stopped = true
	if p.mu.file != nil {
		// Closing the set ends the loop's wait; an error would mean it is
		// closed already.
		_ = p.mu.file.Close()
		p.mu.epfd = -1
	}
}

// epollCtl and epollWaitNow are epoll_ctl and a non-blocking epoll_pwait
// as raw system calls: neither blocks, and the scheduler's system call
// bookkeeping would wake the runtime's monitor thread from its deep sleep
// (and set it polling every 20 us again) each time.
func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

func epollWaitNow(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

// FDMoved moves c's registration in the parker's set from its raw
// descriptor to the netpoller connection's (transport.Owner): a parked
// connection stays parked, armed on new; one not parked is only taken
// out, so that no event for the socket comes under old's number, which
// the next accept may reuse.
func (c *conn) FDMoved(old, new int) {
	c.b.stats.promotions.Add(1)
	c.b.parker.moved(c, old, new)
}

func (p *parker) moved(c *conn, old, new int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.parkReg || c.parkFD != old || p.mu.epfd < 0 {
		return
	}
	// The socket stays open under new, so closing old would leave the
	// registration in the set.
	_ = epollCtl(p.mu.epfd, syscall.EPOLL_CTL_DEL, old, nil)
	c.parkReg = false
	if old >= len(p.mu.conns) || p.mu.conns[old] != c {
		return // not parked: the next park registers new
	}
	p.mu.conns[old] = nil
	if new >= len(p.mu.conns) {
		grown := slices.Grow(p.mu.conns, new+1-len(p.mu.conns))
		p.mu.conns = grown[:cap(grown)]
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(new)}
	c.parkFD = new
	if epollCtl(p.mu.epfd, syscall.EPOLL_CTL_ADD, new, &ev) != 0 {
		// It cannot wait here: its reader goes on with a goroutine
		// (wake takes p.mu).
		go p.wake(c)
		return
	}
	p.mu.conns[new] = c
	c.parkReg = true
}
