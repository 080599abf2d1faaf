//go:build linux && !386

package transport

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// state bits of a conn: the count of raw operations using fd, and two
// flags.
const (
	refMask     = 1<<32 - 1
	retiredBit  = 1 << 32 // no new raw operation: being promoted, promoted or closed
	closingBit  = 1 << 33 // closed: the last raw operation closes fd
	fdClosedBit = 1 << 34 // fd is closed
)

// conn is a raw connection (RawConn). Until it is promoted, its operations
// are raw system calls on fd, each counted in state while it runs so that
// Close never closes the descriptor under one (the number could be reused
// by the next accept). Promotion makes a net.Conn of the socket (p) and
// every operation from then on is p's.
type conn struct {
	fd    int
	state atomic.Uint64
	rdl   atomic.Int64 // read deadline, Unix nanoseconds; 0 for none
	wdl   atomic.Int64 // write deadline
	p     atomic.Pointer[promoted]
	rc    rawConn // SyscallConn's answer

	mu        sync.Mutex // promotion, close, deadlines while raw
	closed    bool
	keepAlive bool // SetKeepAlive's last setting
	owner     fdOwner
	release   func()

	raddr net.TCPAddr
	ip    [16]byte // raddr.IP's bytes
	laddr net.Addr // asked for lazily
}

// promoted is a conn's netpoller connection.
type promoted struct {
	nc *net.TCPConn
	rc syscall.RawConn
}

// rawConn is a conn's syscall.RawConn.
type rawConn struct{ c *conn }

func newConn(fd int, rsa *syscall.RawSockaddrAny) (*conn, error) {
	c := &conn{fd: fd}
	c.rc.c = c
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		copy(c.ip[:], sa.Addr[:])
		c.raddr.IP = c.ip[:4]
		c.raddr.Port = int(binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		copy(c.ip[:], sa.Addr[:])
		c.raddr.IP = c.ip[:16]
		c.raddr.Port = int(binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
		if sa.Scope_id != 0 {
			c.raddr.Zone = zoneName(int(sa.Scope_id))
		}
	}
	// As Go's net does for every TCP connection: no Nagle delay on the
	// small packets MQTT writes.
	if err := setsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != 0 {
		_ = syscall.Close(fd) // not handed out
		return nil, os.NewSyscallError("setsockopt", err)
	}
	return c, nil
}

func zoneName(index int) string {
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(index)
}

func setsockoptInt(fd, level, opt, v int) syscall.Errno {
	val := int32(v)
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&val)), 4, 0)
	return e
}

// incref counts a raw operation on fd; false once the conn is retired.
func (c *conn) incref() bool {
	for {
		s := c.state.Load()
		if s&retiredBit != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// decref ends a raw operation; the last one on a closed conn closes fd.
// (A promotion waits for the count to reach zero and deals with fd
// itself: nothing may close it under the promotion.)
func (c *conn) decref() {
	s := c.state.Add(^uint64(0))
	if s&closingBit != 0 && s&refMask == 0 {
		c.closeFD(s)
	}
}

// retireClosed stops new raw operations for good; fd is closed as soon as
// none runs.
func (c *conn) retireClosed() {
	old := c.state.Or(retiredBit | closingBit)
	if old&refMask == 0 {
		c.closeFD(old | retiredBit | closingBit)
	}
}

// closeFD closes fd unless it is closed already (by whichever of decref
// and retire saw the count reach zero last).
func (c *conn) closeFD(s uint64) {
	for s&fdClosedBit == 0 {
		if c.state.CompareAndSwap(s, s|fdClosedBit) {
			_ = syscall.Close(c.fd) // nothing to report: the conn is closing
			return
		}
		s = c.state.Load()
	}
}

// slow is the way on for an operation that found c retired: the promoted
// connection (waiting for a promotion under way), or the close error.
func (c *conn) slow(op string) (*promoted, error) {
	if p := c.p.Load(); p != nil {
		return p, nil
	}
	p, err := c.promote()
	if err != nil {
		return nil, &net.OpError{Op: op, Net: "tcp", Addr: &c.raddr, Err: err}
	}
	return p, nil
}

// promote makes c a netpoller connection: new raw operations wait for
// it, those under way finish, and the socket becomes a *net.TCPConn
// (net.FileConn: a dup of fd, registered with the netpoller); fd is closed
// once the owner moved what it registered to the new descriptor.
func (c *conn) promote() (*promoted, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.p.Load(); p != nil {
		return p, nil
	}
	if c.closed {
		return nil, net.ErrClosed
	}
	c.state.Or(retiredBit)
	for c.state.Load()&refMask != 0 {
		runtime.Gosched() // raw operations never wait: this one ends soon
	}
	c.state.Or(fdClosedBit) // f below owns fd now
	f := os.NewFile(uintptr(c.fd), "tcp")
	nc, err := net.FileConn(f)
	if err != nil {
		_ = f.Close() // the connection is lost
		c.closed = true
		if rel := c.release; rel != nil {
			c.release = nil
			rel()
		}
		return nil, err
	}
	tc := nc.(*net.TCPConn) // a stream socket: FileConn makes a *TCPConn of it
	rc, err := tc.SyscallConn()
	if err == nil {
		newFD := -1
		err = rc.Control(func(fd uintptr) { newFD = int(fd) })
		if err == nil && c.owner != nil {
			c.owner.fdMoved(c.fd, newFD)
		}
	}
	_ = f.Close() // the socket lives on in nc's descriptor
	if err != nil {
		_ = nc.Close()
		c.closed = true
		if rel := c.release; rel != nil {
			c.release = nil
			rel()
		}
		return nil, err
	}
	// FileConn turns TCP keepalive on, with Go's timing; the connection
	// keeps what it had (off, unless SetKeepAlive turned it on).
	_ = tc.SetKeepAlive(c.keepAlive) // nc is open: no error
	if d := c.rdl.Load(); d != 0 {
		_ = tc.SetReadDeadline(time.Unix(0, d)) // nc is open: no error
	}
	if d := c.wdl.Load(); d != 0 {
		_ = tc.SetWriteDeadline(time.Unix(0, d))
	}
	p := &promoted{nc: tc, rc: rc}
	c.p.Store(p)
	return p, nil
}

// expired reports whether the deadline d (Unix nanoseconds, 0 for none)
// has passed.
func expired(d int64) bool { return d != 0 && time.Now().UnixNano() >= d }

func (r *rawConn) Control(f func(fd uintptr)) error {
	c := r.c
	if p := c.p.Load(); p != nil {
		return p.rc.Control(f)
	}
	if !c.incref() {
		p, err := c.slow("raw-control")
		if err != nil {
			return err
		}
		return p.rc.Control(f)
	}
	f(uintptr(c.fd))
	c.decref()
	return nil
}

func (r *rawConn) Read(f func(fd uintptr) bool) error { return r.c.wait("raw-read", false, f) }

func (r *rawConn) Write(f func(fd uintptr) bool) error { return r.c.wait("raw-write", true, f) }

// wait calls f on fd once; when f asks to wait, c is promoted and the
// promoted connection waits (and calls f again, on its descriptor).
func (c *conn) wait(op string, write bool, f func(fd uintptr) bool) error {
	p := c.p.Load()
	if p == nil {
		if !c.incref() {
			var err error
			if p, err = c.slow(op); err != nil {
				return err
			}
		} else {
			dl := &c.rdl
			if write {
				dl = &c.wdl
			}
			if expired(dl.Load()) {
				c.decref()
				return &net.OpError{Op: op, Net: "tcp", Addr: &c.raddr, Err: os.ErrDeadlineExceeded}
			}
			done := f(uintptr(c.fd))
			c.decref()
			if done {
				return nil
			}
			var err error
			if p, err = c.slow(op); err != nil {
				return err
			}
		}
	}
	if write {
		return p.rc.Write(f)
	}
	return p.rc.Read(f)
}

func (c *conn) SyscallConn() (syscall.RawConn, error) { return &c.rc, nil }

func (c *conn) Read(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		n, errno = sysRW(syscall.SYS_READ, fd, b)
		return errno != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: &c.raddr, Err: os.NewSyscallError("read", errno)}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) Write(b []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(b) {
			n, e := sysRW(syscall.SYS_WRITE, fd, b[written:])
			if e == syscall.EAGAIN {
				return false
			}
			if e != 0 {
				errno = e
				return true
			}
			written += n
		}
		return true
	})
	switch {
	case err != nil:
		return written, err
	case errno != 0:
		return written, &net.OpError{Op: "write", Net: "tcp", Addr: &c.raddr, Err: os.NewSyscallError("write", errno)}
	}
	return written, nil
}

// Close closes the connection. The descriptor of a raw conn is closed
// once no raw operation uses it.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return &net.OpError{Op: "close", Net: "tcp", Addr: &c.raddr, Err: net.ErrClosed}
	}
	c.closed = true
	rel := c.release
	c.release = nil
	p := c.p.Load()
	if p == nil {
		c.retireClosed()
	}
	c.mu.Unlock()
	var err error
	if p != nil {
		err = p.nc.Close()
	}
	if rel != nil {
		rel()
	}
	return err
}

func (c *conn) RemoteAddr() net.Addr { return &c.raddr }

// LocalAddr asks the socket (getsockname) the first time.
func (c *conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.laddr != nil {
		return c.laddr
	}
	if p := c.p.Load(); p != nil {
		c.laddr = p.nc.LocalAddr()
		return c.laddr
	}
	if c.closed {
		return nil
	}
	// Not retired (promotion and close hold mu): fd is open.
	sa, err := syscall.Getsockname(c.fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		c.laddr = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			a.Zone = zoneName(int(sa.ZoneId))
		}
		c.laddr = a
	}
	return c.laddr
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error  { return c.setDeadline(&c.rdl, t, true) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(&c.wdl, t, false) }

func (c *conn) setDeadline(dl *atomic.Int64, t time.Time, read bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.p.Load(); p != nil {
		if read {
			return p.nc.SetReadDeadline(t)
		}
		return p.nc.SetWriteDeadline(t)
	}
	if c.closed {
		return &net.OpError{Op: "set", Net: "tcp", Addr: &c.raddr, Err: net.ErrClosed}
	}
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	dl.Store(d)
	return nil
}

func (c *conn) SetKeepAlive(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.p.Load(); p != nil {
		return p.nc.SetKeepAlive(on)
	}
	if c.closed {
		return &net.OpError{Op: "set", Net: "tcp", Addr: &c.raddr, Err: net.ErrClosed}
	}
	v := 0
	if on {
		v = 1
	}
	// Not retired (promotion and close hold mu): fd is open.
	if errno := setsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, v); errno != 0 {
		return &net.OpError{Op: "set", Net: "tcp", Addr: &c.raddr, Err: os.NewSyscallError("setsockopt", errno)}
	}
	c.keepAlive = on
	return nil
}

func (c *conn) setOwner(o fdOwner) {
	c.mu.Lock()
	c.owner = o
	c.mu.Unlock()
}

func (c *conn) SetRelease(f func()) {
	c.mu.Lock()
	c.release = f
	c.mu.Unlock()
}
