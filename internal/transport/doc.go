// Package transport is the one place for raw sockets: it accepts plain TCP
// connections with raw accept4 calls (Accepter), reads and writes their
// descriptors with raw system calls, lets idle ones wait without a
// goroutine (Parker), and makes a raw connection a netpoller connection
// only when it must wait (promotion). It knows nothing of MQTT; the broker
// sees the small interface of Conn:
//
//	Open(nc, parker, owner)  raw or not: a plain TCP connection's descriptor
//	TryRead(buf)             read without waiting (ErrWouldBlock)
//	Read(buf)                read, waiting in the netpoller (read deadline)
//	Write(buf)               write what the socket takes, without waiting
//	WriteAll(buf)            write all, waiting for room (write deadline)
//	Park(deadline)           wait without a goroutine; owner.Unpark on
//	                         bytes, hang-up, deadline or Wake
//	Wake()                   unpark now (the connection is closing)
//
// # Why raw
//
// Go's net.Listener.Accept makes a connection ready for the netpoller: a
// getsockname call, an epoll_ctl registration, four allocations and a
// finalizer per connection, and a scheduler-visible accept4 that wakes the
// runtime's monitor thread. A broker's connections mostly arrive in
// bursts (a fleet reconnecting after a restart), send their CONNECT at
// once, get a CONNACK and then stay idle for minutes: none of them needs
// the netpoller. A RawConn from an Accepter is a descriptor read and
// written with raw non-blocking system calls; only when an operation
// would wait (a read with nothing buffered, a write to a full socket)
// does it become a net.Conn (net.FileConn, which registers it with the
// netpoller), once, and from then on passes everything to it. Raw read(2)
// and write(2) skip the scheduler's system call bookkeeping, which at low
// message rates woke the monitor thread for every read and write.
//
// Raw accept, raw connections and parking are Linux-only (accept4,
// epoll); elsewhere Of returns nil, Open reports false and connections
// are served through net.Conn.
//
// # Goroutines
//
// The package starts one goroutine: the Parker's loop, started on first
// use and waited for by Parker.Stop. An Accepter's AcceptRaw waits on its
// caller's goroutine.
//
// # Locks
//
// Three mutexes; the one nesting is the raw connection's lock over the
// parker's:
//
//	conn.mu (a RawConn's)  ->  Parker.mu
//	accepter.mu                a leaf: one AcceptRaw at a time
//
// A RawConn's mu (rawconn_linux.go) guards promotion, close, the deadlines
// while raw, keepalive, the owner and the release function. Promotion
// calls the owner's fdMoved under it, which takes Parker.mu (Parker.move)
// and, after releasing it, may unpark the Conn (Parker.wake: Parker.mu
// again, then Owner.Unpark, which must not block or call the RawConn). Raw reads
// and writes take no lock: each counts itself in the RawConn's atomic
// state word, so that the descriptor is closed by whichever of the last
// operation and Close comes later, never under an operation.
//
// Parker.mu guards the epoll set, the stopped flag, the loop's done
// channel, the index of parked Conns by descriptor, and each Conn's
// registration (reg) and deadline timer: Park registers and arms under
// it, wake takes the Conn out of the index and stops the timer under it. Nothing is taken under it, and Owner.Unpark is never called with
// it held; Unpark may be called under a RawConn's mu (a promotion whose
// parked Conn could not be registered under its new descriptor), which is
// why it must not block or call the RawConn.
// Conn.parked is an atomic: whoever clears it unparks the Conn, once per
// park.
package transport
