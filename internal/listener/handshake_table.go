package listener

import (
	"net"
	"net/netip"
	"time"
)

// hsStage is how far an unfinished TLS handshake has come.
type hsStage uint8

const (
	// stageHello: waiting for a complete ClientHello (and, with PROXY
	// protocol, the header before it). An honest client is here for one
	// round trip at most; with TCP_DEFER_ACCEPT its ClientHello is usually
	// buffered before the connection is accepted.
	stageHello hsStage = iota
	// stageHandshake: the ClientHello is in and the server has answered;
	// waiting for the client to finish.
	stageHandshake
	numStages
)

// pendingConn is one connection whose TLS handshake is unfinished.
type pendingConn struct {
	nc       net.Conn
	helloBy  time.Time    // the ClientHello (and PROXY header) must be in by then
	deadline time.Time    // the whole handshake must be done by then
	key      netip.Prefix // per-address key; the zero Prefix: not counted per address
	stage    hsStage
	gone     bool        // removed from the table: evicted, refused, ended or closed
	timer    *time.Timer // WebSocket upgrades only: closes it at deadline (upgrades.expire)
	// prev and next link the connection into its stage's list, oldest first.
	prev, next *pendingConn
}

// pendingList is a doubly linked list of pending connections in the order
// they entered it.
type pendingList struct {
	head, tail *pendingConn
}

func (l *pendingList) pushBack(p *pendingConn) {
	p.prev, p.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = p
	} else {
		l.head = p
	}
	l.tail = p
}

func (l *pendingList) unlink(p *pendingConn) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

// handshakeTable holds the unfinished handshakes of one listener: by
// connection (for the ClientHello callback), by stage in arrival order (for
// eviction) and counted per remote address. It is not safe for concurrent
// use: handshakeListener.mu guards it.
type handshakeTable struct {
	byConn     map[net.Conn]*pendingConn
	stages     [numStages]pendingList
	perAddr    map[netip.Prefix]int
	maxPerAddr int
}

func newHandshakeTable(maxPerAddr int) handshakeTable {
	return handshakeTable{
		byConn:     make(map[net.Conn]*pendingConn),
		perAddr:    make(map[netip.Prefix]int),
		maxPerAddr: maxPerAddr,
	}
}

// len returns the number of unfinished handshakes.
func (t *handshakeTable) len() int { return len(t.byConn) }

// addrFull reports whether key already has its share of unfinished
// handshakes. The zero key (an address we cannot read) is never full.
func (t *handshakeTable) addrFull(key netip.Prefix) bool {
	return key.IsValid() && t.perAddr[key] >= t.maxPerAddr
}

// add enters p, in stageHello, counted under p.key when it is valid.
func (t *handshakeTable) add(p *pendingConn) {
	t.byConn[p.nc] = p
	p.stage = stageHello
	t.stages[stageHello].pushBack(p)
	if p.key.IsValid() {
		t.perAddr[p.key]++
	}
}

// setKey counts p, entered without a key, under key.
func (t *handshakeTable) setKey(p *pendingConn, key netip.Prefix) {
	p.key = key
	if key.IsValid() {
		t.perAddr[key]++
	}
}

// advance moves p from stageHello to stageHandshake.
func (t *handshakeTable) advance(p *pendingConn) {
	if p.gone || p.stage != stageHello {
		return
	}
	t.stages[stageHello].unlink(p)
	p.stage = stageHandshake
	t.stages[stageHandshake].pushBack(p)
}

// remove takes p out of the table; it reports false when p was already out.
func (t *handshakeTable) remove(p *pendingConn) bool {
	if p.gone {
		return false
	}
	p.gone = true
	delete(t.byConn, p.nc)
	t.stages[p.stage].unlink(p)
	if p.key.IsValid() {
		if n := t.perAddr[p.key] - 1; n > 0 {
			t.perAddr[p.key] = n
		} else {
			delete(t.perAddr, p.key)
		}
	}
	return true
}

// victim returns the connection to close to make room for a new one: the
// oldest that has not sent a complete ClientHello yet, else the oldest
// still finishing its handshake; nil when the table is empty. An honest
// client leaves stageHello within a round trip, so the oldest there is the
// one that has sent least for longest.
func (t *handshakeTable) victim() *pendingConn {
	for s := range t.stages {
		if p := t.stages[s].head; p != nil {
			return p
		}
	}
	return nil
}

// drain empties the table and returns the connections it held.
func (t *handshakeTable) drain() []net.Conn {
	conns := make([]net.Conn, 0, len(t.byConn))
	for nc, p := range t.byConn {
		p.gone = true
		conns = append(conns, nc)
	}
	clear(t.byConn)
	clear(t.perAddr)
	t.stages = [numStages]pendingList{}
	return conns
}

// busiest returns the address key with the most unfinished handshakes and
// their number; the zero Prefix when none is counted.
func (t *handshakeTable) busiest() (netip.Prefix, int) {
	var key netip.Prefix
	n := 0
	for k, c := range t.perAddr {
		if c > n {
			key, n = k, c
		}
	}
	return key, n
}

// addrKey returns the per-address key of a remote address: the IPv4
// address itself, or the /64 network of an IPv6 address (what one
// subscriber is usually given, so a host cannot multiply its share by
// changing its interface identifier). ok is false for an address that is
// not IP.
func addrKey(a net.Addr) (key netip.Prefix, ok bool) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip = v.AddrPort().Addr()
	case nil:
		return netip.Prefix{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	bits := 64
	if ip.Is4() {
		bits = 32
	}
	key, err := ip.Prefix(bits)
	if err != nil || !key.IsValid() {
		return netip.Prefix{}, false
	}
	return key, true
}
