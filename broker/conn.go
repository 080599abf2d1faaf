package broker

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/transport"
	"github.com/petrel-mqtt/petrel/packet"
)

// Buffer sizes: the reader takes a pooled buffer only while data arrives;
// the writer only while it has something to write.
const (
	readBufSize   = 16 << 10
	writeBufSize  = 16 << 10
	writeFlushAt  = 64 << 10
	writeBatchMax = 256
	closeTimeout  = 2 * time.Second
)

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// connectBufSize is the buffer a new connection reads its CONNECT into:
// one read for most CONNECTs (a JWT password included), and a connection
// that never sends one holds 1 KiB, not a 16 KiB buffer.
const connectBufSize = 1 << 10

var connectBufPool = sync.Pool{New: func() any { b := make([]byte, connectBufSize); return &b }}

var writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}

var publishPool = sync.Pool{New: func() any { return new(packet.Publish) }}

var batchPool = sync.Pool{New: func() any { b := make([]session.Outbound, 0, writeBatchMax); return &b }}

// conn is one client connection. Its fields are grouped by the goroutine
// that owns them:
//
//   - set before the connection is shared (newConn, Broker.serveConn) and
//     read-only after;
//   - the reader's: the one goroutine running the read loop at a time (a
//     connection goroutine, the accepting goroutine while inline, or the
//     goroutine a parked connection is resumed on; each hands over to the
//     next through the goroutine pool's channel or a go statement);
//   - the writer's: whoever holds the writing flag (a writer goroutine, or
//     another connection's reader in writeInline);
//   - shared, under mu or atomic.
//
// The reader decodes and handles packets (reader.go, handle_*.go); a
// writer runs only while there is something to send and is the only code
// that writes to nc (writer.go); wake.go starts writers, park.go lets an
// idle reader go, close.go ends the connection.
type conn struct {
	// Set before the connection is shared; read-only after.
	b      *Broker
	stripe uint32  // this connection's stripe: of the counters, of the trie's locks
	stats  *stripe // this connection's stripe of the per-message counters
	// m is the connection's per-tenant counts (metrics.go): written by its
	// reader and writer, atomics.
	m  connMetrics
	nc net.Conn
	li *listenerInfo // the listener's name and certificate naming
	// accepted is when the connection was accepted: the connect timeout
	// counts from it.
	accepted time.Time
	// tr is the raw descriptor access and parking of a plain TCP
	// connection under RawTransport (internal/transport; tr.Raw() false
	// for TLS, WebSocket and the net path). Its own state is its own
	// (transport's locks); the broker only calls it.
	tr transport.Conn

	// Under b.mu: the broker's list of connections (connList).
	lprev, lnext *conn
	// Under b.mu: another node took this connection's session over
	// (Broker.KickRemote): its end is not a Fabric.Release.
	remoteKicked bool
	// journalDiscard: the cluster's journal may hold an older session of
	// the key that this CONNECT does not resume (clean start, or expired
	// while no node held it); persistSession deletes it (adopt.go).
	journalDiscard bool
	// logQ: the reader's log writes not yet seen answered, oldest first
	// (conn.logPublish).
	logQ []*logWait

	// The reader's. remoteAddr is the client's address, set when serving
	// starts (before the first packet); logs format it (remoteString)
	// only when they are written.
	remoteAddr net.Addr
	// The reader's, set while handling CONNECT and read only by the
	// reader afterwards (the writer reads copies kept in mu; its logs read
	// clientID, set before any writer sees the session).
	connected  bool
	clean      bool
	version    packet.Version
	clientID   string // as the client knows it (CONNACK, logs)
	key        string // its session's key, SessionKey(tenant, clientID)
	id         *Identity
	sess       *session.Session
	will       *packet.Will
	readWait   time.Duration // 1.5 x keepalive; 0 for none
	expiry     uint32        // 5.0 session expiry interval in seconds
	pending    *pendingConnect
	authMethod string            // 5.0 enhanced authentication method, "" for none
	inAlias    map[uint16]string // 5.0 inbound topic aliases
	// The reader's: connections whose writers it starts before it next
	// waits for input (wake.go, flushWakes).
	wakes   []*conn
	handled int // packets handled since the last flushWakes
	// The reader's read buffer: nil while idle; small holds the first
	// bytes of a burst.
	rbuf  *[]byte
	r, w  int
	small [8]byte
	// The reader's, for deadlines and parking (park.go): lastRead is when
	// bytes last arrived (the keepalive deadline counts from it).
	lastRead time.Time
	rdl      time.Time // the read deadline set last (valid once rdlSet)
	rdlSet   bool
	woken    bool // set by Unpark before it resumes the reader
	active   bool // a packet came after CONNECT
	busy     bool // the last two reads came within parkGrace: park only after it
	// stayedBusy: the grace deadline passed with bytes read since; the
	// grace is busyGrace until the connection parks (reader.go, grace).
	stayedBusy bool
	// The reader's, served on its accepting goroutine (serve.go): inline
	// is set while the accept loop runs the reader, which then never
	// waits; what would wait goes on in a connection goroutine, with the
	// CONNECT that could not be handled inline in handoff, or the read
	// loop's error for the cleanup in endErr.
	inline  bool
	handoff packet.Packet
	endErr  error
	// held: the connection was refused and its socket handed to the
	// broker's held refusals, which write the CONNACK and close it; the
	// cleanup leaves nc alone.
	held bool
	// dur is the durable pipeline (durable.go), nil until the reader's
	// first durable publish; read by the reader and by the pipeline's
	// goroutine, which the reader starts after making it.
	dur *durablePipe
	// removalsWaiting counts the removals waiting in dur (durablePipe
	// removals), for the writer (flushRemovals).
	removalsWaiting atomic.Int32

	// writing grants the right to be the writer: a writer goroutine is
	// running or being started, or a reader is in writeInline. Taken with
	// CompareAndSwap(false, true), given back with releaseWriter.
	writing atomic.Bool
	// stopWait is set once stopWriter waits for the writer: releaseWriter
	// then tells it (mu.writerIdle).
	stopWait atomic.Bool

	// The writer's (whoever holds writing): 5.0 outbound topic aliases,
	// the control packet slice handed back to mu.ctrl, and the bytes
	// writeInline could not write without waiting, for the writer
	// goroutine it starts.
	outAlias      map[string]uint16
	outAliasBytes int // bytes of the topic names in outAlias
	wspare        []packet.Packet
	inAck         ack // the reader's: the acknowledgement it decoded last (readAck)
	wpending      *[]byte

	// Shared by the reader, the writer and closers from outside.
	mu struct {
		sync.Mutex
		version   packet.Version
		sess      *session.Session
		connacked bool
		maxPacket int             // the client's 5.0 Maximum Packet Size, 0 for none
		aliasMax  uint16          // the client's 5.0 Topic Alias Maximum
		expiry    *time.Timer     // credentials expiry
		ctrl      []packet.Packet // acks and other control packets to send
		closing   bool            // no more session traffic; close after ctrl is flushed
		reason    closeReason
		// finished is closed when the connection has cleaned up; made
		// only for a waiter (finishedChan: a takeover), ended once done.
		finished chan struct{}
		ended    bool
		// writerIdle is closed by releaseWriter for a waiting stopWriter.
		writerIdle chan struct{}
	}
}

func newConn(b *Broker, nc net.Conn) *conn {
	c := &conn{b: b, nc: nc, stripe: b.stats.stripeOf(), accepted: time.Now()}
	c.stats = &b.stats.stripes[c.stripe]
	return c
}

// keepAliver returns what turns TCP keepalive on for nc: a raw
// connection, or the TCP connection under nc; nil for anything else.
func keepAliver(nc net.Conn) interface{ SetKeepAlive(bool) error } { return transport.KeepAliver(nc) }

// isErr is errors.Is with the common cases first: err is target itself,
// or the peer's close (io.EOF), which wraps nothing.
func isErr(err, target error) bool {
	if err == target {
		return true
	}
	if err == nil || err == io.EOF {
		return false
	}
	return errors.Is(err, target)
}

// handle dispatches one packet.
func (c *conn) handle(p packet.Packet) error {
	if !c.connected {
		switch p := p.(type) {
		case *packet.Connect:
			if c.pending != nil {
				return protocolError("second CONNECT [MQTT-3.1.0-2]")
			}
			return c.handleConnect(p)
		case *packet.Auth: // readPacket let it through only during enhanced authentication
			return c.handleAuth(p)
		}
		return protocolError("first packet is %s, not CONNECT [MQTT-3.1.0-1]", p.Type())
	}
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *ack:
		return c.handleAck(*p)
	case *packet.Puback:
		return c.puback(p.PacketID)
	case *packet.Pubrec:
		return c.pubrec(p.PacketID, p.ReasonCode)
	case *packet.Pubrel:
		return c.pubrel(p.PacketID)
	case *packet.Pubcomp:
		return c.pubcomp(p.PacketID)
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		c.reply(&packet.Pingresp{}) // [MQTT-3.12.4-1]
		return nil
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Auth:
		return c.handleAuth(p)
	case *packet.Connect:
		// A second CONNECT is a protocol violation [MQTT-3.1.0-2].
		return protocolError("second CONNECT [MQTT-3.1.0-2]")
	default:
		// CONNACK, SUBACK, UNSUBACK and PINGRESP go from server to client.
		return protocolError("unexpected %s from client", p.Type())
	}
}

// remoteString is the client's address as the logs show it.
func (c *conn) remoteString() string {
	if c.remoteAddr == nil {
		return ""
	}
	return c.remoteAddr.String()
}
