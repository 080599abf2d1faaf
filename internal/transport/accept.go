package transport

import (
	"net"
	"syscall"
)

// Accepter accepts raw connections from one listener.
type Accepter interface {
	// AcceptRaw waits for and returns the next connection, a RawConn.
	// Errors are those of net.Listener.Accept: one wrapping net.ErrClosed
	// once the listener or the Accepter is closed.
	AcceptRaw() (net.Conn, error)
	// Close ends a waiting AcceptRaw and every later one. It does not
	// close the listener.
	Close() error
}

// RawConn is a connection accepted by an Accepter: a net.Conn whose
// SyscallConn reads and writes the descriptor directly.
type RawConn interface {
	net.Conn
	// SyscallConn returns the descriptor access. Its Read and Write call
	// f once on the raw descriptor; when f asks to wait, the connection
	// becomes a netpoller connection and f is called again on its
	// descriptor, which may differ (fdOwner).
	SyscallConn() (syscall.RawConn, error)
	// SetKeepAlive turns TCP keepalive on or off.
	SetKeepAlive(on bool) error
	// setOwner names who is told when the descriptor changes (the
	// broker's side of the connection, Conn.Open). Call it before the
	// connection is shared between goroutines.
	setOwner(o fdOwner)
	// SetRelease sets a function called once, when the connection is
	// closed (a listener's connection count, say). Call it before the
	// connection is shared between goroutines.
	SetRelease(f func())
}

// fdOwner learns of a RawConn's descriptor changing from old to new, when
// it becomes a netpoller connection: whatever it registered old with (the
// parker's set) it must move to new. Both are open during the call; old
// is closed after it. fdMoved runs while the RawConn's operations wait,
// and under its lock, so it must not call the RawConn.
type fdOwner interface {
	fdMoved(old, new int)
}

// Source is a listener that can hand out an Accepter; RawTCP returns nil
// when its connections need more than a raw descriptor (TLS, WebSocket,
// PROXY protocol).
type Source interface {
	RawTCP() Accepter
}

// Of returns an Accepter for l: a *net.TCPListener's own, or a Source's.
// It returns nil when l has none or the platform has none; then use
// l.Accept.
func Of(l net.Listener) Accepter {
	switch l := l.(type) {
	case *net.TCPListener:
		a, err := New(l)
		if err != nil {
			return nil
		}
		return a
	case Source:
		return l.RawTCP()
	}
	return nil
}
