//go:build linux

package broker

import (
	"sync"
	"syscall"
	"time"
)

// parker lets idle plain-TCP connections wait without a goroutine: their
// file descriptor waits in a broker-owned epoll set (one-shot) and a reader
// goroutine is started again when bytes arrive, when the keepalive
// deadline passes, or when the connection is being closed. An idle
// connection then costs its heap state, not a parked goroutine's stack.
type parker struct {
	b    *Broker
	once sync.Once
	mu   struct {
		sync.Mutex
		epfd    int
		stopped bool
		conns   map[int]*conn // by file descriptor
	}
}

func newParker(b *Broker) *parker {
	p := &parker{b: b}
	p.mu.epfd = -1
	p.mu.conns = make(map[int]*conn)
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
		p.mu.Lock()
		p.mu.epfd = fd
		p.mu.Unlock()
		p.b.wg.Add(1)
		go p.loop(fd)
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
	parked := false
	// Inside Control the descriptor cannot be closed and reused.
	err := raw.Control(func(fd uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.mu.stopped {
			return
		}
		c.parkFD = int(fd)
		c.parked.Store(true)
		p.mu.conns[int(fd)] = c
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
		if syscall.EpollCtl(p.mu.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) != nil {
			delete(p.mu.conns, int(fd))
			c.parked.Store(false)
			return
		}
		parked = true
	})
	if err != nil || !parked {
		return false
	}
	if !deadline.IsZero() {
		t := time.AfterFunc(time.Until(deadline), func() { p.wake(c) })
		c.mu.Lock()
		c.mu.parkTimer = t
		c.mu.Unlock()
	}
	return true
}

// wake resumes c if it is parked: its reader goroutine starts again.
func (p *parker) wake(c *conn) {
	if !c.parked.CompareAndSwap(true, false) {
		return
	}
	p.mu.Lock()
	if p.mu.conns[c.parkFD] == c {
		delete(p.mu.conns, c.parkFD)
		// The descriptor may be closed already (then it left the set by
		// itself); the error says nothing more.
		_ = syscall.EpollCtl(p.mu.epfd, syscall.EPOLL_CTL_DEL, c.parkFD, nil)
	}
	p.mu.Unlock()
	c.mu.Lock()
	if c.mu.parkTimer != nil {
		c.mu.parkTimer.Stop()
		c.mu.parkTimer = nil
	}
	c.mu.Unlock()
	c.woken = true // read by the resumed reader, which starts after this
	go c.resume()
}

// loop waits for readiness events until stop.
func (p *parker) loop(epfd int) {
	defer p.b.wg.Done()
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(epfd, events, 100) // ms: bounds how long stop waits
		p.mu.Lock()
		if p.mu.stopped {
			p.mu.Unlock()
			_ = syscall.Close(epfd) // nothing is registered any more
			return
		}
		var ready []*conn
		for i := 0; i < n && err == nil; i++ {
			if c := p.mu.conns[int(events[i].Fd)]; c != nil {
				ready = append(ready, c)
			}
		}
		p.mu.Unlock()
		for _, c := range ready {
			p.wake(c)
		}
	}
}

// stop ends the loop; connections still parked are woken by their close.
func (p *parker) stop() {
	p.mu.Lock()
	p.mu.stopped = true
	p.mu.Unlock()
}
