//go:build linux && !386

package transport

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// closedCheck is how often a waiting AcceptRaw looks whether its listener
// was closed by someone else than Accepter.Close (closing a listener
// takes it out of the epoll set silently).
const closedCheck = time.Second

// accepter waits for the listener in an epoll set of its own (whose
// descriptor waits in the netpoller: no thread blocks) and accepts with
// raw accept4 calls through the listener's RawConn.Control, which keeps
// the descriptor from being closed and reused under the call.
type accepter struct {
	lrc   syscall.RawConn // the listener's: Control only
	laddr net.Addr
	ep    *pollSet

	closed atomic.Bool

	mu       sync.Mutex // one AcceptRaw at a time: the fields below
	acceptFn func(fd uintptr)
	waitFn   func(fd uintptr) bool
	nfd      int
	errno    syscall.Errno
	rsa      syscall.RawSockaddrAny
	events   [1]syscall.EpollEvent
}

// New returns an Accepter for l. Close it when done with it; it does not
// close l.
func New(l *net.TCPListener) (Accepter, error) {
	lrc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	ep, err := newPollSet("transport-accept")
	if err != nil {
		return nil, err
	}
	var cerr syscall.Errno
	err = lrc.Control(func(fd uintptr) {
		// Level-triggered: the set stays readable while connections wait.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		cerr = epollCtl(ep.fd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil && cerr != 0 {
		err = os.NewSyscallError("epoll_ctl", cerr)
	}
	if err != nil {
		_ = ep.file.Close() // never used
		return nil, err
	}
	a := &accepter{lrc: lrc, laddr: l.Addr(), ep: ep}
	a.acceptFn = func(fd uintptr) {
		for {
			alen := uint32(syscall.SizeofSockaddrAny)
			// Raw: a non-blocking accept4 returns at once, and the
			// scheduler's system call bookkeeping would wake the
			// runtime's monitor thread.
			n, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&a.rsa)), uintptr(unsafe.Pointer(&alen)),
				syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
			if e == syscall.EINTR || e == syscall.ECONNABORTED {
				continue // as Go's net does: a connection reset before accept is no error
			}
			a.nfd, a.errno = int(n), e
			return
		}
	}
	a.waitFn = func(fd uintptr) bool {
		n, e := epollWaitNow(int(fd), a.events[:])
		if e == syscall.EINTR {
			return false
		}
		return e != 0 || n > 0 // ready, or an error the accept will see too
	}
	return a, nil
}

func (a *accepter) AcceptRaw() (net.Conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		if a.closed.Load() {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: a.laddr, Err: net.ErrClosed}
		}
		if err := a.lrc.Control(a.acceptFn); err != nil {
			return nil, err // the listener is closed (wraps net.ErrClosed)
		}
		switch a.errno {
		case 0:
			c, err := newConn(a.nfd, &a.rsa)
			if err != nil {
				continue // closed at once; the client sees a reset
			}
			return c, nil
		case syscall.EAGAIN:
		default:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: a.laddr, Err: os.NewSyscallError("accept4", a.errno)}
		}
		// Nothing waiting: wait for the listener to become readable, or
		// look again after closedCheck.
		_ = a.ep.file.SetReadDeadline(time.Now().Add(closedCheck)) // fails only once closed, which Read reports
		if err := a.ep.rc.Read(a.waitFn); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: a.laddr, Err: net.ErrClosed}
		}
	}
}

func (a *accepter) Close() error {
	// Closing the set ends a waiting AcceptRaw. Not under mu: that is
	// held by the AcceptRaw it ends.
	a.closed.Store(true)
	err := a.ep.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
