// Package transport accepts plain TCP connections on a listener's descriptor
// with raw accept4 calls and serves them without Go's net package until
// they need it.
//
// Go's net.Listener.Accept makes a connection ready for the netpoller:
// a getsockname call, an epoll_ctl registration, four allocations and a
// finalizer per connection, and a scheduler-visible accept4 that wakes the
// runtime's monitor thread. A broker's connections mostly arrive in
// bursts (a fleet reconnecting after a restart), send their CONNECT at
// once, get a CONNACK and then stay idle for minutes: none of them needs
// the netpoller. A Conn from this package is a descriptor read and written
// with raw non-blocking system calls; only when an operation would wait
// (a read with nothing buffered, a write to a full socket) does it become
// a net.Conn (net.FileConn, which registers it with the netpoller), once,
// and from then on passes everything to it.
//
// The package is Linux-only (accept4, epoll); Of returns nil elsewhere.
package transport

import (
	"net"
	"syscall"
)

// Accepter accepts raw connections from one listener.
type Accepter interface {
	// AcceptRaw waits for and returns the next connection, a Conn.
	// Errors are those of net.Listener.Accept: one wrapping net.ErrClosed
	// once the listener or the Accepter is closed.
	AcceptRaw() (net.Conn, error)
	// Close ends a waiting AcceptRaw and every later one. It does not
	// close the listener.
	Close() error
}

// Conn is a connection accepted by an Accepter: a net.Conn whose
// SyscallConn reads and writes the descriptor directly.
type Conn interface {
	net.Conn
	// SyscallConn returns the descriptor access. Its Read and Write call
	// f once on the raw descriptor; when f asks to wait, the connection
	// becomes a netpoller connection and f is called again on its
	// descriptor, which may differ (Owner.FDMoved).
	SyscallConn() (syscall.RawConn, error)
	// SetKeepAlive turns TCP keepalive on or off.
	SetKeepAlive(on bool) error
	// SetOwner names who is told when the descriptor changes. Call it
	// before the connection is shared between goroutines.
	SetOwner(o Owner)
	// SetRelease sets a function called once, when the connection is
	// closed (a listener's connection count, say). Call it before the
	// connection is shared between goroutines.
	SetRelease(f func())
}

// Owner learns of a Conn's descriptor changing from old to new, when it
// becomes a netpoller connection: whatever it registered old with (an
// epoll set of its own) it must move to new. Both are open during the
// call; old is closed after it. FDMoved runs while the Conn's operations
// wait, so it must not call the Conn.
type Owner interface {
	FDMoved(old, new int)
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
