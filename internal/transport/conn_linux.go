//go:build linux

package transport

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Open makes c the access to nc's descriptor when nc is a plain TCP
// connection: a RawConn from an Accepter, or a *net.TCPConn seen through
// wrappers that pass reads and writes straight through. p parks it (nil:
// it never parks) and owner is told when a parked c must be read again.
// It reports whether c is raw; when not, serve nc through net.Conn.
func (c *Conn) Open(nc net.Conn, p *Parker, owner Owner) bool {
	var raw syscall.RawConn
	if rc, ok := nc.(RawConn); ok {
		r, err := rc.SyscallConn()
		if err != nil {
			return false
		}
		rc.setOwner(c) // told when its descriptor changes (the parker's set)
		raw = r
	} else if tc := tcpConn(nc); tc != nil {
		r, err := tc.SyscallConn()
		if err != nil {
			return false
		}
		raw = r
	} else {
		return false
	}
	c.raw, c.p, c.owner = raw, p, owner
	return true
}

// fdMoved moves c's registration in the parker's set from its raw
// descriptor to the netpoller connection's: a parked connection stays
// parked, armed on new; one not parked is only taken out, so that no
// event for the socket comes under old's number, which the next accept
// may reuse.
func (c *Conn) fdMoved(old, new int) {
	if c.p != nil {
		c.p.moved(c, old, new)
	}
}

// The raw reads' and writes' state (with the function RawConn calls, made
// once per state) is taken for one call at a time: a connection that is
// not reading or writing holds none of it (128 bytes and two allocations
// fewer per connection than one state each).
var (
	readPool  = sync.Pool{New: func() any { return new(rawRead) }}
	writePool = sync.Pool{New: func() any { return new(rawWrite) }}
)

// Read reads into buf like net.Conn's Read, waiting for data in the
// netpoller (the read deadline set on the net.Conn applies): at least one
// byte, or an error (io.EOF when the peer closed its side).
func (c *Conn) Read(buf []byte) (int, error) {
	r := readPool.Get().(*rawRead)
	n, err := r.read(c.raw, buf, false)
	readPool.Put(r)
	return n, err
}

// TryRead is Read without waiting: ErrWouldBlock when nothing is buffered.
func (c *Conn) TryRead(buf []byte) (int, error) {
	r := readPool.Get().(*rawRead)
	n, err := r.read(c.raw, buf, true)
	readPool.Put(r)
	return n, err
}

// Write writes what the socket takes of buf without waiting: n < len(buf)
// with a nil error when the socket buffer is full.
func (c *Conn) Write(buf []byte) (int, error) {
	w := writePool.Get().(*rawWrite)
	n, err := w.write(c.raw, buf)
	writePool.Put(w)
	return n, err
}

// WriteAll writes all of buf, waiting for room in the netpoller when the
// socket is full (the write deadline set on the net.Conn applies).
func (c *Conn) WriteAll(buf []byte) error {
	w := writePool.Get().(*rawWrite)
	err := w.writeAll(c.raw, buf)
	writePool.Put(w)
	return err
}

// rawWrite is a non-blocking write on a descriptor, with the functions
// given to RawConn.Write made once per state (no allocation per write).
type rawWrite struct {
	fn, fnAll func(fd uintptr) bool
	buf       []byte
	n         int
	err       syscall.Errno
}

func (w *rawWrite) writeAll(raw syscall.RawConn, buf []byte) error {
	if w.fnAll == nil {
		w.fnAll = func(fd uintptr) bool {
			for len(w.buf) > 0 {
				n, e := sysRW(syscall.SYS_WRITE, fd, w.buf)
				switch e {
				case 0:
					w.buf = w.buf[n:]
				case syscall.EAGAIN:
					return false // wait for room, then call again
				default:
					w.err = e
					return true
				}
			}
			return true
		}
	}
	w.buf = buf
	err := raw.Write(w.fnAll)
	werr := w.err
	w.buf, w.err = nil, 0
	if err != nil {
		return err // closed, or the write deadline passed
	}
	if werr != 0 {
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", werr)}
	}
	return nil
}

func (w *rawWrite) write(raw syscall.RawConn, buf []byte) (int, error) {
	if w.fn == nil {
		w.fn = func(fd uintptr) bool {
			w.n, w.err = sysRW(syscall.SYS_WRITE, fd, w.buf)
			return true // never wait for writability here
		}
	}
	w.buf = buf
	err := raw.Write(w.fn)
	n, werr := w.n, w.err
	w.buf, w.n, w.err = nil, 0, 0
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != 0:
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", werr)}
	}
	return n, nil
}

// rawRead reads from a descriptor, with the function given to RawConn.Read
// made once per state.
type rawRead struct {
	fn  func(fd uintptr) bool
	buf []byte
	n   int
	err syscall.Errno
	try bool // return EAGAIN instead of waiting
}

func (r *rawRead) read(raw syscall.RawConn, buf []byte, try bool) (int, error) {
	if r.fn == nil {
		r.fn = func(fd uintptr) bool {
			r.n, r.err = sysRW(syscall.SYS_READ, fd, r.buf)
			// EAGAIN: wait for readiness and call again, unless trying.
			return r.err != syscall.EAGAIN || r.try
		}
	}
	r.buf, r.try = buf, try
	err := raw.Read(r.fn)
	n, rerr := r.n, r.err
	r.buf, r.n, r.err = nil, 0, 0
	switch {
	case err != nil:
		return 0, err // closed, or the deadline passed (a timeout net.Error)
	case rerr == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
