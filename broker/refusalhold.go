package broker

import (
	"container/heap"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// Held refusals: a CONNECT refused by an authenticator's failure limits
// (a username or an address with too many failed password checks) may
// have its CONNACK held for a delay before it is written and the
// connection closed, as SSH, Postfix and PAM's pam_faildelay do. A
// guesser that waits for its answer then costs the broker one refusal per
// connection per delay instead of one per round trip; one that does not
// wait fills its address's share of held connections and has its next
// connections closed at accept, before anything is read. Nothing but a
// timer waits: the connection's reader finishes as for any refusal, and
// the held socket, with its encoded CONNACK, waits in a heap for the one
// timer (docs/design/connection-model.md, "Held refusals").

// HeldRefusal is an Authenticator's refusal whose CONNACK the broker holds
// for Delay before it writes it and closes the connection, within
// Options.HeldRefusals and HeldRefusalsPerAddress (beyond them the CONNACK
// is written at once). Its Unwrap is the reason code. Meant for refusals
// that a guesser causes and an honest client does not: the failure limits.
type HeldRefusal struct {
	Code  packet.ReasonCode
	Delay time.Duration
	Err   error // why, for the log; nil: the code's name
}

func (e *HeldRefusal) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("refused: %v", e.Code)
}

func (e *HeldRefusal) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Code, e.Err}
	}
	return []error{e.Code}
}

// Defaults of Options.HeldRefusals and HeldRefusalsPerAddress.
const (
	DefaultHeldRefusals           = 1024
	DefaultHeldRefusalsPerAddress = 64
)

// heldRcvBuf is the receive buffer a held socket is shrunk to: nothing
// reads it again, so what a client sends while it waits stays in the
// kernel, at most this much (the kernel doubles it for its bookkeeping).
const heldRcvBuf = 4096

// heldConn is one held refusal: the socket, its CONNACK and when it is due.
type heldConn struct {
	nc  net.Conn
	ack []byte
	due time.Time
	key netip.Addr // per-address key; the zero Addr: not counted per address
}

// heldHeap orders held refusals by due time.
type heldHeap []*heldConn

func (h heldHeap) Len() int           { return len(h) }
func (h heldHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h heldHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heldHeap) Push(x any)        { *h = append(*h, x.(*heldConn)) }
func (h *heldHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// heldRefusals holds refused connections until their CONNACK is due: at
// most max in all and perAddr per address, with one timer for the
// earliest. Its lock is a leaf (docs/design/locking.md).
type heldRefusals struct {
	max, perAddr int
	now          func() time.Time

	count                     atomic.Int64 // held now; read without the lock at accept
	holds, overflow, atAccept atomic.Uint64
	mu                        struct {
		sync.Mutex
		q      heldHeap
		byAddr map[netip.Addr]int
		timer  *time.Timer
		closed bool
	}
}

func newHeldRefusals(max, perAddr int, now func() time.Time) *heldRefusals {
	if max == 0 {
		max = DefaultHeldRefusals
	}
	if perAddr == 0 {
		perAddr = DefaultHeldRefusalsPerAddress
	}
	h := &heldRefusals{max: max, perAddr: min(perAddr, max), now: now}
	h.mu.byAddr = make(map[netip.Addr]int)
	return h
}

// heldKey is the per-address key of a remote address: the address for
// IPv4, its /64 for IPv6 (one host is commonly given a whole /64).
func heldKey(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// admit reports whether a new connection from remote may be served: not
// when its address's share of held refusals is full, so that a guesser
// that reconnects without waiting for its answers is closed at accept.
func (h *heldRefusals) admit(remote net.Addr) bool {
	if h.max < 0 || h.count.Load() == 0 {
		return true
	}
	k := heldKey(remote)
	if !k.IsValid() {
		return true
	}
	h.mu.Lock()
	full := h.mu.byAddr[k] >= h.perAddr
	h.mu.Unlock()
	if full {
		h.atAccept.Add(1)
	}
	return !full
}

// hold takes nc, to write ack on it and close it after delay; false when
// the bounds are full (or held refusals are off), and the caller answers
// at once.
func (h *heldRefusals) hold(nc net.Conn, ack []byte, delay time.Duration) bool {
	if h.max < 0 || delay <= 0 {
		return false
	}
	k := heldKey(nc.RemoteAddr())
	e := &heldConn{nc: nc, ack: ack, due: h.now().Add(delay), key: k}
	h.mu.Lock()
	if h.mu.closed || len(h.mu.q) >= h.max || (k.IsValid() && h.mu.byAddr[k] >= h.perAddr) {
		h.mu.Unlock()
		h.overflow.Add(1)
		return false
	}
	heap.Push(&h.mu.q, e)
	if k.IsValid() {
		h.mu.byAddr[k]++
	}
	h.count.Add(1)
	if h.mu.q[0] == e {
		h.armLocked()
	}
	h.mu.Unlock()
	h.holds.Add(1)
	shrinkRcvBuf(nc)
	return true
}

// armLocked sets the timer for the earliest held refusal.
func (h *heldRefusals) armLocked() {
	d := max(h.mu.q[0].due.Sub(h.now()), 0)
	if h.mu.timer == nil {
		h.mu.timer = time.AfterFunc(d, h.fire)
		return
	}
	h.mu.timer.Reset(d)
}

// fire answers the held refusals that are due and arms the timer for the
// next one.
func (h *heldRefusals) fire() {
	now := h.now()
	var due []*heldConn
	h.mu.Lock()
	for len(h.mu.q) > 0 && !h.mu.q[0].due.After(now) {
		due = append(due, h.takeLocked())
	}
	if len(h.mu.q) > 0 && !h.mu.closed {
		h.armLocked()
	}
	h.mu.Unlock()
	answer(due)
}

// takeLocked removes the earliest held refusal.
func (h *heldRefusals) takeLocked() *heldConn {
	e := heap.Pop(&h.mu.q).(*heldConn)
	if e.key.IsValid() {
		if n := h.mu.byAddr[e.key] - 1; n > 0 {
			h.mu.byAddr[e.key] = n
		} else {
			delete(h.mu.byAddr, e.key)
		}
	}
	h.count.Add(-1)
	return e
}

// close answers every held refusal at once and holds no more (Shutdown).
func (h *heldRefusals) close() {
	var all []*heldConn
	h.mu.Lock()
	h.mu.closed = true
	if h.mu.timer != nil {
		h.mu.timer.Stop()
	}
	for len(h.mu.q) > 0 {
		all = append(all, h.takeLocked())
	}
	h.mu.Unlock()
	answer(all)
}

// answer writes each held refusal's CONNACK and closes its connection.
// The CONNACK is a few bytes on a socket nothing else wrote to, so the
// write does not wait; the deadline bounds it anyway.
func answer(held []*heldConn) {
	for _, e := range held {
		_ = e.nc.SetWriteDeadline(time.Now().Add(closeTimeout)) // a closed conn fails the write below
		_, _ = e.nc.Write(e.ack)                                // the client may be gone: nothing to do either way
		_ = e.nc.Close()                                        // refused: the close error is of no use
	}
}

// shrinkRcvBuf makes nc's socket receive buffer heldRcvBuf, when nc (or
// what it wraps, through NetConn) gives access to its descriptor.
func shrinkRcvBuf(nc net.Conn) {
	for range 4 {
		if sc, ok := nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { // a closed socket: nothing to bound
					_ = setRcvBuf(fd, heldRcvBuf) // best effort: the kernel keeps its default
				})
			}
			return
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		nc = w.NetConn()
	}
}

// HeldStats counts held refusals (Stats).
type HeldStats struct {
	Held     int    // connections held now
	Holds    uint64 // refusals held since start
	Overflow uint64 // refusals answered at once: the bounds were full
	AtAccept uint64 // connections closed at accept: their address's share was full
}

func (h *heldRefusals) stats() HeldStats {
	return HeldStats{Held: int(h.count.Load()), Holds: h.holds.Load(), Overflow: h.overflow.Load(), AtAccept: h.atAccept.Load()}
}
