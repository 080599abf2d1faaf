//go:build linux

package broker

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/petrel-mqtt/petrel/internal/transport"
)

// Plain TCP connections are read and written through their descriptor with
// raw system calls: the socket is non-blocking, so a read or write returns
// at once, and waiting for readiness (deadlines included) is left to the
// netpoller through RawConn. Unlike net.Conn's Read and Write this skips
// the scheduler's system call bookkeeping, which at low message rates woke
// the runtime's monitor thread (sysmon) for every read and write.

// rawTCP returns the descriptor access of a plain TCP connection: a raw
// one from internal/transport, or a *net.TCPConn seen through wrappers that
// pass reads and writes straight through; nil otherwise (TLS and
// WebSocket connections buffer inside their libraries).
func rawTCP(nc net.Conn) syscall.RawConn {
	if rc, ok := nc.(transport.Conn); ok {
		raw, err := rc.SyscallConn()
		if err != nil {
			return nil
		}
		return raw
	}
	tc := tcpConn(nc)
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// sysRW makes one read(2) or write(2) (trap) on fd with buf, without the
// scheduler's system call bookkeeping, again when interrupted.
func sysRW(trap, fd uintptr, buf []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// rawWrite is a non-blocking write on a descriptor, with the function
// given to RawConn.Write made once per connection (no allocation per write).
type rawWrite struct {
	fn, fnAll func(fd uintptr) bool
	buf       []byte
	n         int
	err       error
}

// writeAll writes all of buf, waiting for the socket through the
// netpoller when it is full (RawConn.Write, which applies the write
// deadline).
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
	w.buf, w.err = nil, nil
	if err != nil {
		return err // closed, or the write deadline passed
	}
	if werr != nil {
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", werr)}
	}
	return nil
}

// write writes what the socket takes of buf without waiting: n < len(buf)
// with a nil error when the socket buffer is full.
func (w *rawWrite) write(raw syscall.RawConn, buf []byte) (int, error) {
	if w.fn == nil {
		w.fn = func(fd uintptr) bool {
			if n, e := sysRW(syscall.SYS_WRITE, fd, w.buf); e != 0 {
				w.n, w.err = 0, e
			} else {
				w.n, w.err = n, nil
			}
			return true // never wait for writability here
		}
	}
	w.buf = buf
	err := raw.Write(w.fn)
	n, werr := w.n, w.err
	w.buf, w.n, w.err = nil, 0, nil
	if err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN {
		return n, nil
	}
	if werr != nil {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", werr)}
	}
	return n, nil
}

// rawRead reads from a descriptor, waiting for data through the netpoller
// (RawConn.Read, which applies the read deadline); its function is made
// once per connection.
type rawRead struct {
	fn  func(fd uintptr) bool
	buf []byte
	n   int
	err error
	try bool // tryRead: return EAGAIN instead of waiting
}

// read reads into buf like net.Conn's Read: at least one byte, or an
// error (io.EOF when the peer closed its side).
func (r *rawRead) read(raw syscall.RawConn, buf []byte) (int, error) {
	if r.fn == nil {
		r.fn = func(fd uintptr) bool {
			n, e := sysRW(syscall.SYS_READ, fd, r.buf)
			switch e {
			case 0:
				r.n, r.err = n, nil
			case syscall.EAGAIN:
				if r.try {
					r.n, r.err = 0, e
					return true
				}
				return false // wait for readiness, then call again
			default:
				r.n, r.err = 0, e
			}
			return true
		}
	}
	r.buf = buf
	err := raw.Read(r.fn)
	n, rerr := r.n, r.err
	r.buf, r.n, r.err = nil, 0, nil
	switch {
	case err != nil:
		return 0, err // closed, or the deadline passed (a timeout net.Error)
	case rerr == syscall.EAGAIN:
		return 0, errHandOff
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// tryRead is read without waiting: errHandOff when nothing is buffered.
func (r *rawRead) tryRead(raw syscall.RawConn, buf []byte) (int, error) {
	r.try = true
	n, err := r.read(raw, buf)
	r.try = false
	return n, err
}
