package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// Closing a connection: why it ends (closeReason, closeError), closing it
// from its reader or from outside (sendAndClose, closeWith), and the
// cleanup after its read loop ended (end, cleanup, stopWriter).

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
	reasonAdministrative // closed through the admin API (Broker.Kick)
	reasonRevoked        // its credentials are no longer accepted (Broker.Reauthorize)
)

var reasonNames = [...]string{"none", "client disconnect", "client disconnect with will", "session taken over", "server shutdown",
	"protocol error", "network error", "keepalive timeout", "not authorized", "connect refused", "administrative action",
	"credentials revoked"}

func (r closeReason) String() string { return reasonNames[r] }

// sendsWill reports whether a connection of version v ending this way
// publishes its will: not after DISCONNECT [MQTT-3.14.4-3], not on
// shutdown, not when its credentials were revoked (the identity that set
// the will is no longer accepted), and on takeover only in 5.0, where the
// closed connection's will follows its delay rules (DESIGN.md; 5.0
// section 3.1.4).
func (r closeReason) sendsWill(v packet.Version) bool {
	switch r {
	case reasonDisconnectWithWill, reasonProtocol, reasonNetwork, reasonKeepAlive, reasonNotAuthorized, reasonAdministrative:
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

// sendAndClose queues p (nil for none) as the last packet and closes the
// connection once it is written, by a writer goroutine.
func (c *conn) sendAndClose(p packet.Packet, reason closeReason) {
	if c.queueLast(p, reason) {
		c.kick()
	}
}

// queueLast queues p (nil for none) as the last packet and marks the
// connection closing, unless it was already; it starts no writer. The
// reader's own refusals use it: their read loop ends with the error they
// return, and cleanup writes p on the reader's goroutine, so that a
// refused connection costs no writer goroutine (bench/floods.sh).
func (c *conn) queueLast(p packet.Packet, reason closeReason) bool {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return false
	}
	c.mu.closing = true
	c.mu.reason = reason
	if p != nil {
		c.mu.ctrl = append(c.mu.ctrl, p)
	}
	c.mu.Unlock()
	// The last write must not block for long on a peer that does not read.
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout)) // closed conn: the close follows anyway
	return true
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
		c.releaseWriter()
	} else {
		c.queueLast(last, reason)
		if c.writing.CompareAndSwap(false, true) {
			// No writer runs: the last packets are written here, where
			// stopWriter below would wait for a writer goroutine to
			// write them (within closeTimeout either way). A running
			// writer sees closing when it releases the flag (hasWork).
			c.writeLoop()
		}
	}
	if c.removalsWaiting.Load() > 0 {
		c.flushRemovals() // not needed for safety (persistSession writes them again), but spares a resent PUBREL
	}
	c.waitDurable() // its deliveries are on disk: they are queued before the session is let go
	c.stopWriter()
	c.mu.Lock()
	if c.mu.expiry != nil {
		c.mu.expiry.Stop()
	}
	c.mu.Unlock()
	if !c.held {
		// The writer closed nc after its last write; close again in case it never ran.
		_ = c.nc.Close() // already closed or closing: nothing to report
	}
	c.releaseReadBuf()

	if c.connected {
		c.countDisconnect(reason)
		sendWill := c.will != nil && reason.sendsWill(c.version)
		delayed := sendWill && !c.clean && willDelay(c.will, c.version) > 0
		shared := c.b.detach(c, delayed)
		if sendWill {
			c.publishWill()
		}
		if !delayed {
			c.b.dropWill(c.key) // decided here; a delayed one is kept until it is sent or cancelled
		}
		c.b.redistribute(shared, c.sess)
		if c.b.log.Enabled(context.Background(), slog.LevelInfo) { // no argument building when off
			c.b.log.Info("client disconnected", "tenant", c.id.Tenant, "client", c.clientID, "remote", c.remoteString(), "listener", c.li.name,
				"version", c.version.String(), "reason", reason.String(), "err", errString(err, reason))
		}
	} else {
		c.logUnconnected(reason, err)
	}
}

func errString(err error, reason closeReason) string {
	if err == nil || reason == reasonClientDisconnect || reason == reasonDisconnectWithWill || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return ""
	}
	return err.Error()
}

// stopWriter waits until no writer runs and makes sure none starts again:
// it holds the writing flag for good once it has it. While it waits, the
// writer hands the flag back through releaseWriter, which closes the
// channel stopWriter waits on.
func (c *conn) stopWriter() {
	for !c.writing.CompareAndSwap(false, true) {
		idle := make(chan struct{})
		c.mu.Lock()
		c.mu.writerIdle = idle
		c.mu.Unlock()
		// Set after writerIdle: a writer that releases the flag after
		// this sees it and closes idle; one that released it before
		// lets the CompareAndSwap below succeed.
		c.stopWait.Store(true)
		if c.writing.CompareAndSwap(false, true) {
			return
		}
		<-idle
	}
}

// releaseWriter gives the writing flag back, and tells a waiting
// stopWriter.
func (c *conn) releaseWriter() {
	c.writing.Store(false)
	if !c.stopWait.Load() {
		return
	}
	c.mu.Lock()
	idle := c.mu.writerIdle
	c.mu.writerIdle = nil
	c.mu.Unlock()
	if idle != nil {
		close(idle)
	}
}
