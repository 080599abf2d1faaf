package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/transport"
	"github.com/petrel-mqtt/petrel/packet"
)

// closeReason says why a connection ended; it decides whether the will is
// published and what is logged.
type closeReason int

const (
	reasonNone closeReason = iota
	reasonClientDisconnect
	reasonDisconnectWithWill
	reasonTakeover
	reasonShutdown
	reasonProtocol
	reasonNetwork
	reasonKeepAlive
	reasonNotAuthorized
	reasonRefused
)

var reasonNames = [...]string{"none", "client disconnect", "client disconnect with will", "session taken over", "server shutdown",
	"protocol error", "network error", "keepalive timeout", "not authorized", "connect refused"}

func (r closeReason) String() string { return reasonNames[r] }

// sendsWill reports whether a connection of version v ending this way
// publishes its will: not after DISCONNECT [MQTT-3.14.4-3], not on
// shutdown, and on takeover only in 5.0, where the closed connection's
// will follows its delay rules (DESIGN.md; 5.0 section 3.1.4).
func (r closeReason) sendsWill(v packet.Version) bool {
	switch r {
	case reasonDisconnectWithWill, reasonProtocol, reasonNetwork, reasonKeepAlive, reasonNotAuthorized:
		return true
	case reasonTakeover:
		return v == packet.V5
	}
	return false
}

// closeError ends a connection from a handler: the reason code (for a 5.0
// DISCONNECT) and the close reason, with the underlying error for the log.
type closeError struct {
	code   packet.ReasonCode
	reason closeReason
	err    error
}

func (e *closeError) Error() string { return e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

func protocolError(format string, args ...any) error {
	return &closeError{code: packet.ProtocolError, reason: reasonProtocol, err: fmt.Errorf(format, args...)}
}

// errClientDisconnect ends the read loop after a DISCONNECT packet.
var errClientDisconnect = errors.New("broker: client sent DISCONNECT")

// errDisconnectWithWill ends the read loop after a 5.0 DISCONNECT 0x04,
// which asks for the will to be published.
var errDisconnectWithWill = errors.New("broker: client sent DISCONNECT with will message")

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

// conn is one client connection. Its reader goroutine (serve) decodes and
// handles packets; a writer goroutine (writeLoop) runs only while there is
// something to send and is the only code that writes to nc.
type conn struct {
	b      *Broker
	stripe uint32  // this connection's stripe: of the counters, of the trie's locks
	stats  *stripe // this connection's stripe of the per-message counters
	nc     net.Conn
	// remoteAddr is the client's address, set when serving starts; logs
	// format it (remoteString) only when they are written.
	remoteAddr net.Addr
	li         *listenerInfo // the listener's name and certificate naming
	// The broker's list of connections (connList), under b.mu.
	lprev, lnext *conn

	// Reader-owned state: set while handling CONNECT, read only by the
	// reader afterwards (the writer reads copies kept in mu).
	connected  bool
	version    packet.Version
	clientID   string // as the client knows it (CONNACK, logs)
	key        string // its session's key, SessionKey(tenant, clientID)
	clean      bool
	id         *Identity
	sess       *session.Session
	will       *packet.Will
	readWait   time.Duration // 1.5 x keepalive; 0 for none
	expiry     uint32        // 5.0 session expiry interval in seconds
	pending    *pendingConnect
	authMethod string            // 5.0 enhanced authentication method, "" for none
	inAlias    map[uint16]string // 5.0 inbound topic aliases

	// Writer-owned (one writer goroutine at a time): 5.0 outbound topic
	// aliases, and the batch recording sent stored deliveries.
	outAlias      map[string]uint16
	outAliasBytes int // bytes of the topic names in outAlias
	wbatch        Batch
	wspare        []packet.Packet // the control packet slice handed back to mu.ctrl

	// Reader-owned: connections whose writers this reader starts before
	// it next waits for input (see flushWakes).
	wakes   []*conn
	handled int // packets handled since the last flushWakes

	// Read buffer: nil while idle; small holds the first bytes of a burst.
	rbuf  *[]byte
	r, w  int
	small [8]byte

	// tr is the raw descriptor access and parking of a plain TCP
	// connection under RawTransport (internal/transport; tr.Raw() false
	// for TLS, WebSocket and the net path), opened before the connection
	// is seen by others (Broker.serveConn).
	tr transport.Conn

	// accepted is when the connection was accepted: the connect timeout
	// counts from it.
	accepted time.Time
	// Idle parking (park_linux.go): lastRead is when bytes last arrived
	// (the keepalive deadline counts from it).
	lastRead time.Time
	rdl      time.Time // the read deadline set last (valid once rdlSet)
	rdlSet   bool
	woken    bool // set by Unpark before it resumes the reader
	active   bool // a packet came after CONNECT
	busy     bool // the last two reads came within parkGrace: park only after it

	// Served on its accepting goroutine (Broker.Serve): inline is set
	// while the accept loop runs the reader, which then never waits; what
	// would wait goes on in a connection goroutine, with the CONNECT that
	// could not be handled inline in handoff, or the read loop's error for
	// the cleanup in endErr.
	inline  bool
	handoff packet.Packet
	endErr  error

	// dur is the durable pipeline (durable.go), nil until the reader's
	// first durable publish; read by the reader and by the pipeline's
	// goroutine, which the reader starts after making it.
	dur *durablePipe

	writing atomic.Bool // a writer goroutine is running (or being started)

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
	}
}

func newConn(b *Broker, nc net.Conn) *conn {
	c := &conn{b: b, nc: nc, stripe: b.stats.stripeOf(), accepted: time.Now()}
	c.stats = &b.stats.stripes[c.stripe]
	return c
}

// serve runs the read loop and cleans up after it.
func (c *conn) serve() {
	// RemoteAddr may read (a PROXY protocol header), so it is asked here,
	// in the connection's goroutine, not in the accept loop.
	c.remoteAddr = c.nc.RemoteAddr()
	c.lastRead = time.Now()
	c.resume()
}

// serveInline serves a new connection on the goroutine that accepted it,
// as far as it goes without waiting: a plain TCP connection whose CONNECT
// is already buffered, with a quick authenticator and nothing to wait for
// in the session table, is connected, sent its CONNACK and parked, with no
// goroutine of its own started. Anything that would wait (no CONNECT yet,
// a takeover, a store write, more packets) goes on in a connection
// goroutine, from where the inline reader stopped.
func (c *conn) serveInline() {
	if !c.tr.CanPark() {
		// TLS, WebSocket, PROXY protocol (whose RemoteAddr reads).
		c.b.gor.run(job{c, taskServe})
		return
	}
	c.remoteAddr = c.nc.RemoteAddr() // a plain TCP connection's: no reading
	c.lastRead = c.accepted          // just accepted
	// Fresh from accept, the socket has no read deadline: rdl's zero is
	// true, and a reader going on without one (no keepalive) sets none.
	c.rdlSet = true
	c.inline = true
	c.resume()
}

// resume runs the read loop until the connection ends, then cleans up; or
// until it parks idle, leaving the rest to a later resume.
func (c *conn) resume() {
	err := c.readLoop()
	if isErr(err, errParked) {
		return
	}
	if c.inline {
		// The accepting goroutine's turn ends; a connection goroutine
		// goes on reading, or cleans up.
		c.inline = false
		if isErr(err, errHandOff) {
			c.b.gor.run(job{c, taskResume})
		} else {
			c.endErr = err
			c.b.gor.run(job{c, taskEnd})
		}
		return
	}
	c.end(err)
}

// end cleans up after the read loop ended with err.
func (c *conn) end(err error) {
	c.endErr = nil
	defer c.b.wg.Done()
	defer c.markFinished()
	defer c.b.forgetConn(c)
	c.cleanup(err)
}

// closedChan is a closed channel: finishedChan's answer once a connection
// has finished without anyone waiting.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// finishedChan returns a channel closed once c has cleaned up (end).
func (c *conn) finishedChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.finished == nil {
		if c.mu.ended {
			return closedChan
		}
		c.mu.finished = make(chan struct{})
	}
	return c.mu.finished
}

// markFinished closes finishedChan's channel, if anyone asked for it.
func (c *conn) markFinished() {
	c.mu.Lock()
	c.mu.ended = true
	ch := c.mu.finished
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// keepAliver returns what turns TCP keepalive on for nc: a raw
// connection, or the TCP connection under nc; nil for anything else.
func keepAliver(nc net.Conn) interface{ SetKeepAlive(bool) error } { return transport.KeepAliver(nc) }

// Unpark resumes a parked connection's reader (transport.Owner): bytes
// arrived, its deadline passed, or it is being closed.
func (c *conn) Unpark() {
	c.woken = true // read by the resumed reader, which starts after this
	c.b.gor.run(job{c, taskResume})
}

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

// errParked ends the read loop of a connection parked idle.
var errParked = errors.New("broker: connection parked")

// errHandOff ends an inline read loop (serveInline) where it would wait.
var errHandOff = errors.New("broker: handed to a connection goroutine")

// parkable reports whether c could wait idle without its goroutine: a
// plain TCP connection, connected, not in an authentication exchange, on a
// platform with a parker.
func (c *conn) parkable() bool {
	if !c.connected || c.pending != nil {
		return false
	}
	return c.tr.CanPark()
}

// park lets an idle connection wait without its goroutine; false when it
// must go on reading with it.
func (c *conn) park() bool {
	deadline := c.readDeadline() // the connect timeout before CONNECT
	// Once parked, c is the parker's, and whichever goroutine it resumes
	// c on is not the accepting one.
	inline := c.inline
	c.inline = false
	if !c.tr.Park(deadline) {
		c.inline = inline
		return false
	}
	c.b.stats.parks.Add(1)
	return true
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
	case *packet.Puback:
		return c.handlePuback(p)
	case *packet.Pubrec:
		return c.handlePubrec(p)
	case *packet.Pubrel:
		return c.handlePubrel(p)
	case *packet.Pubcomp:
		return c.handlePubcomp(p)
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

// send queues a control packet for the writer.
func (c *conn) send(p packet.Packet) {
	if c.queueCtrl(p) {
		c.kick()
	}
}

// queueCtrl queues a control packet unless the connection is closing.
func (c *conn) queueCtrl(p packet.Packet) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closing {
		return false
	}
	c.mu.ctrl = append(c.mu.ctrl, p)
	return true
}

// reply queues a control packet from the reader goroutine: the writer is
// started when the reader has handled what it read (flushWakes), so that
// the acks of a burst go out in one write.
func (c *conn) reply(p packet.Packet) {
	if c.queueCtrl(p) {
		c.deferWake(c)
	}
}

// deferWake notes, in c's reader goroutine, that to's writer must be
// started: flushWakes does it before c's reader waits for input.
func (c *conn) deferWake(to *conn) {
	if to.writing.Load() {
		return // its running writer finds the new item (see writeLoop's end)
	}
	if n := len(c.wakes); n > 0 && c.wakes[n-1] == to {
		return
	}
	c.wakes = append(c.wakes, to)
}

// inlineWritesMax is how many writers one flushWakes may run in the
// reader's goroutine; with more (a fan-out) they all get their own
// goroutine and run in parallel while the reader goes on reading.
const inlineWritesMax = 2

// flushWakes starts the writers deferWake noted. A few write in this
// goroutine, with one non-blocking write each (writeInline): at low and
// moderate rates a message then goes from the publisher's read to the
// subscriber's socket without waking another goroutine.
func (c *conn) flushWakes() {
	inline := len(c.wakes) <= inlineWritesMax // a fan-out writes in parallel
	// Its own connection only after a few packets (a client at a low or
	// moderate rate, or CONNACK): in a flood its writer runs beside the
	// reader (a reader writing its own acks and messages would stop
	// reading meanwhile, and acking a flood sooner only fills subscriber
	// queues faster).
	self := c.handled <= inlineSelfMax
	for i, to := range c.wakes {
		c.wakes[i] = nil
		if !to.writing.CompareAndSwap(false, true) {
			continue
		}
		if inline && (to != c || self) {
			to.writeInline()
		} else {
			c.b.gor.run(job{to, taskWrite})
		}
	}
	c.wakes = c.wakes[:0]
	c.handled = 0
}

// inlineSelfMax is how many packets a reader may have handled since its
// last flushWakes and still write its own replies itself.
const inlineSelfMax = 4

// Wake starts c's writer (session.Waker).
func (c *conn) Wake() { c.kick() }

// sendAndClose queues p (nil for none) as the last packet and closes the
// connection once it is written.
func (c *conn) sendAndClose(p packet.Packet, reason closeReason) {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	c.mu.closing = true
	c.mu.reason = reason
	if p != nil {
		c.mu.ctrl = append(c.mu.ctrl, p)
	}
	c.mu.Unlock()
	// The last write must not block for long on a peer that does not read.
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout)) // closed conn: the close follows anyway
	c.kick()
}

// closeWith ends the connection from outside its reader (takeover,
// shutdown): a 5.0 client that got its CONNACK is sent DISCONNECT code.
func (c *conn) closeWith(code packet.ReasonCode, reason closeReason) {
	c.mu.Lock()
	var p packet.Packet
	if c.mu.connacked && c.mu.version == packet.V5 {
		p = &packet.Disconnect{ReasonCode: code}
	}
	c.mu.Unlock()
	c.sendAndClose(p, reason)
}

// kick starts the writer unless it is running. Cheap when it is.
func (c *conn) kick() {
	if c.writing.CompareAndSwap(false, true) {
		c.b.gor.run(job{c, taskWrite})
	}
}

// cleanup runs after the read loop ended with err: it stops the writer,
// detaches or discards the session and publishes the will when due.
func (c *conn) cleanup(err error) {
	reason := reasonNetwork
	var code packet.ReasonCode
	var ce *closeError
	switch {
	case err == io.EOF:
		// The client closed the connection: the common end, and one that
		// need not go through errors.As's reflection, a visible share of
		// the broker's CPU when clients come and go (BENCHMARKS.md).
	case errors.Is(err, errClientDisconnect):
		reason = reasonClientDisconnect
	case errors.As(err, &ce):
		reason, code = ce.reason, ce.code
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason, code = reasonKeepAlive, packet.KeepAliveTimeout
			if !c.connected {
				reason = reasonProtocol // no CONNECT within the connect timeout
			}
		}
	}
	c.mu.Lock()
	if c.mu.reason != reasonNone { // closed from outside first (takeover, shutdown)
		reason = c.mu.reason
	}
	var last packet.Packet
	if c.mu.connacked && c.mu.version == packet.V5 && code.IsError() {
		last = &packet.Disconnect{ReasonCode: code}
	}
	nothing := last == nil && len(c.mu.ctrl) == 0
	c.mu.Unlock()
	if nothing && c.writing.CompareAndSwap(false, true) {
		// Nothing left to send and no writer: close here rather than
		// start a writer to do it (stopWriter below takes the flag back).
		c.mu.Lock()
		if !c.mu.closing {
			c.mu.closing, c.mu.reason = true, reason
		}
		c.mu.Unlock()
		c.writing.Store(false)
	} else {
		c.sendAndClose(last, reason)
	}
	c.waitDurable() // its deliveries are on disk: they are queued before the session is let go
	c.stopWriter()
	c.mu.Lock()
	if c.mu.expiry != nil {
		c.mu.expiry.Stop()
	}
	c.mu.Unlock()
	// The writer closed nc after its last write; close again in case it never ran.
	_ = c.nc.Close() // already closed or closing: nothing to report
	c.releaseReadBuf()

	if c.connected {
		sendWill := c.will != nil && reason.sendsWill(c.version)
		shared := c.b.detach(c, sendWill && !c.clean && willDelay(c.will, c.version) > 0)
		if sendWill {
			c.publishWill()
		}
		c.b.redistribute(shared, c.sess)
		if c.b.log.Enabled(context.Background(), slog.LevelInfo) { // no argument building when off
			c.b.log.Info("client disconnected", "tenant", c.id.Tenant, "client", c.clientID, "remote", c.remoteString(), "listener", c.li.name,
				"version", c.version.String(), "reason", reason.String(), "err", errString(err, reason))
		}
	} else if reason != reasonNetwork || !errors.Is(err, io.EOF) {
		c.b.log.Debug("connection closed before CONNECT completed", "remote", c.remoteString(), "reason", reason.String(), "err", err)
	}
}

// remoteString is the client's address as the logs show it.
func (c *conn) remoteString() string {
	if c.remoteAddr == nil {
		return ""
	}
	return c.remoteAddr.String()
}

func errString(err error, reason closeReason) string {
	if err == nil || reason == reasonClientDisconnect || reason == reasonDisconnectWithWill || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return ""
	}
	return err.Error()
}

// stopWriter waits until no writer runs and makes sure none starts again:
// it holds the writing flag for good once it has it.
func (c *conn) stopWriter() {
	for !c.writing.CompareAndSwap(false, true) {
		time.Sleep(time.Millisecond)
	}
}
