// Package client is a small MQTT client on package packet, for petrel pub
// and sub, the load generator and the bridge. It speaks MQTT 3.1, 3.1.1 and
// 5.0 over any net.Conn (TCP by default; TLS or WebSocket through
// Options.Dialer).
//
// A Client owns two goroutines: a reader, which decodes every packet,
// answers the acknowledgements of inbound QoS 1 and 2 messages and hands
// messages to Messages, and a keepalive pinger (only when KeepAlive > 0).
// Writes are serialised by a mutex. Both goroutines end, and Close returns,
// once the connection is closed. A Client does not reconnect and does not
// retransmit after a reconnect: it is one network connection.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// Errors returned by a Client. Errors from Dial and the methods wrap one of
// these, a packet.ReasonCode, a net error or a context error.
var (
	// ErrRefused: the server answered CONNACK with a failure; the error is a
	// *ConnectError that also wraps the packet.ReasonCode.
	ErrRefused = errors.New("client: connection refused")
	// ErrClosed: the client was closed (Close or Disconnect).
	ErrClosed = errors.New("client: connection closed")
	// ErrConnectionLost: the connection ended without Close; Err tells why.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrKeepAliveTimeout: no PINGRESP came within a keepalive period.
	ErrKeepAliveTimeout = errors.New("client: keepalive timeout")
	// ErrProtocol: the server sent a packet the protocol does not allow here.
	ErrProtocol = errors.New("client: protocol error")
	// ErrNoPacketID: all 65,535 packet identifiers are in use.
	ErrNoPacketID = errors.New("client: no free packet identifier")
)

// DefaultConnectTimeout bounds Dial when Options.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// DefaultMessageBuffer is the capacity of Messages when
// Options.MessageBuffer is zero.
const DefaultMessageBuffer = 256

// Options configures Dial. Only Addr (or Dialer) is required.
type Options struct {
	// Addr is the server's host:port, used by the default TCP dialer.
	Addr string
	// ClientID is sent in CONNECT; empty asks the server to assign one
	// (5.0 returns it, see Client.ClientID).
	ClientID string
	// Version is the protocol level: packet.V31 (3), packet.V311 (4) or
	// packet.V5 (5). Zero means packet.V311.
	Version packet.Version
	// CleanStart asks for a new session (clean session in 3.x).
	CleanStart bool
	// SessionExpiry is the 5.0 session expiry interval in seconds sent in
	// CONNECT (0: the session ends with the connection). Ignored in 3.x.
	SessionExpiry uint32
	// KeepAlive is the keepalive period, sent in whole seconds (rounded
	// up); the client sends PINGREQ when it has sent nothing for that long.
	// Zero disables keepalive. A 5.0 server keepalive overrides it.
	KeepAlive time.Duration
	// Username is sent when non-empty.
	Username string
	// Password is sent when non-nil (3.x requires a Username with it).
	Password []byte
	// Will is the will message, nil for none.
	Will *packet.Will
	// Dialer opens the connection; nil dials TCP to Addr. It lets TLS or
	// WebSocket transports plug in.
	Dialer func(ctx context.Context) (net.Conn, error)
	// ConnectTimeout bounds dialing and the CONNECT/CONNACK exchange;
	// zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxPacketSize bounds inbound packets in bytes (0: no bound beyond
	// the protocol's); in 5.0 it is also sent to the server.
	MaxPacketSize int
	// MessageBuffer is the capacity of the Messages channel; zero means
	// DefaultMessageBuffer.
	MessageBuffer int
	// Logger receives a debug record for every packet sent and received;
	// nil discards them.
	Logger *slog.Logger
}

// ConnectError is the error Dial returns when the server refuses the
// connection. errors.Is(err, ErrRefused) holds, and errors.As recovers the
// packet.ReasonCode.
type ConnectError struct {
	// Code is the CONNACK reason code (a 3.x return code mapped to 5.0).
	Code packet.ReasonCode
	// Reason is the 5.0 reason string, if the server sent one.
	Reason string
}

// Error returns e.g. "client: connection refused: not authorized (0x87)".
func (e *ConnectError) Error() string {
	s := fmt.Sprintf("%v: %s (0x%02X)", ErrRefused, e.Code.String(), byte(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns ErrRefused and the reason code.
func (e *ConnectError) Unwrap() []error { return []error{ErrRefused, e.Code} }

// Client is one MQTT connection. Its methods are safe for concurrent use.
type Client struct {
	nc        net.Conn
	version   packet.Version
	clientID  string
	keepAlive time.Duration
	maxOut    int // server's maximum packet size (5.0), 0 for none
	log       *slog.Logger
	connack   *packet.Connack

	msgs      chan *packet.Publish
	closing   chan struct{} // closed when the connection is shut down
	closeOnce sync.Once
	wg        sync.WaitGroup // reader and pinger
	inflight  chan struct{}  // outbound QoS 1/2 window (5.0 receive maximum)
	lastWrite atomic.Int64   // unix nanoseconds of the last write
	pingSent  atomic.Int64   // unix nanoseconds of an unanswered PINGREQ, 0 for none
	userClose atomic.Bool    // Close or Disconnect started the shutdown

	w struct {
		sync.Mutex
		buf []byte
	}

	mu struct {
		sync.Mutex
		err     error               // why the connection ended
		nextID  uint16              // last packet id handed out
		pending map[uint16]*pending // flows awaiting acks, by packet id
		qos2In  map[uint16]struct{} // inbound QoS 2 ids received, PUBREL not yet
	}
}

// Dial connects to the server, sends CONNECT and waits for CONNACK. It
// returns a *ConnectError when the server refuses; ctx and
// Options.ConnectTimeout bound the whole exchange.
func Dial(ctx context.Context, o Options) (*Client, error) {
	v := o.Version
	if v == 0 {
		v = packet.V311
	}
	if v != packet.V31 && v != packet.V311 && v != packet.V5 {
		return nil, fmt.Errorf("client: unsupported protocol version %d", byte(v))
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dial := o.Dialer
	if dial == nil {
		if o.Addr == "" {
			return nil, errors.New("client: no address")
		}
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", o.Addr)
		}
	}
	nc, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	c, err := handshake(ctx, nc, v, &o)
	if err != nil {
		_ = nc.Close() // the handshake error is the one to report
		return nil, err
	}
	c.start()
	return c, nil
}

// handshake sends CONNECT on nc and reads the CONNACK.
func handshake(ctx context.Context, nc net.Conn, v packet.Version, o *Options) (*Client, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	buf := o.MessageBuffer
	if buf <= 0 {
		buf = DefaultMessageBuffer
	}
	ka := keepAliveSeconds(o.KeepAlive)
	c := &Client{
		nc:        nc,
		version:   v,
		clientID:  o.ClientID,
		keepAlive: time.Duration(ka) * time.Second,
		log:       log,
		msgs:      make(chan *packet.Publish, buf),
		closing:   make(chan struct{}),
	}
	c.mu.pending = make(map[uint16]*pending)
	c.mu.qos2In = make(map[uint16]struct{})

	// The deadline ends the exchange when ctx does; AfterFunc covers a
	// cancellation without deadline.
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetDeadline(time.Unix(1, 0)) // unblocks I/O; an error means nc is closed already
	})
	defer stop()

	name := "MQTT"
	if v == packet.V31 {
		name = "MQIsdp"
	}
	conn := &packet.Connect{
		ProtocolName: name,
		Version:      v,
		CleanStart:   o.CleanStart,
		KeepAlive:    ka,
		ClientID:     o.ClientID,
		Will:         o.Will,
		Username:     o.Username,
		Password:     o.Password,
	}
	if v == packet.V5 {
		if o.SessionExpiry > 0 {
			conn.Properties.SessionExpiryInterval = o.SessionExpiry
			conn.Properties.Set(packet.PropSessionExpiryInterval)
		}
		if o.MaxPacketSize > 0 {
			conn.Properties.MaximumPacketSize = uint32(min(o.MaxPacketSize, packet.MaxRemainingLength+5))
			conn.Properties.Set(packet.PropMaximumPacketSize)
		}
	}
	if err := c.send(ctx, conn); err != nil {
		if cause := ctxCause(ctx, err); cause != nil {
			return nil, fmt.Errorf("client: sending CONNECT: %w", cause)
		}
		return nil, err
	}
	p, err := packet.ReadPacket(nc, v, o.MaxPacketSize)
	if err != nil {
		if cause := ctxCause(ctx, err); cause != nil {
			err = cause
		}
		return nil, fmt.Errorf("client: reading CONNACK: %w", err)
	}
	c.logPacket("received", p)
	ack, ok := p.(*packet.Connack)
	if !ok {
		return nil, fmt.Errorf("%w: expected CONNACK, got %s", ErrProtocol, p.Type())
	}
	if ack.ReasonCode != packet.Success {
		return nil, &ConnectError{Code: ack.ReasonCode, Reason: ack.Properties.ReasonString}
	}
	c.connack = ack
	receiveMax := 65535
	if v == packet.V5 {
		pr := &ack.Properties
		if pr.Has(packet.PropAssignedClientIdentifier) {
			c.clientID = pr.AssignedClientIdentifier
		}
		if pr.Has(packet.PropServerKeepAlive) {
			c.keepAlive = time.Duration(pr.ServerKeepAlive) * time.Second // 5.0 [MQTT-3.2.2-21]
		}
		if pr.Has(packet.PropReceiveMaximum) && pr.ReceiveMaximum > 0 {
			receiveMax = int(pr.ReceiveMaximum)
		}
		if pr.Has(packet.PropMaximumPacketSize) {
			c.maxOut = int(pr.MaximumPacketSize)
		}
	}
	c.inflight = make(chan struct{}, receiveMax)
	if !stop() { // ctx ended just now and may be moving the deadline
		return nil, fmt.Errorf("client: %w", context.Cause(ctx))
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// keepAliveSeconds converts d to the CONNECT keepalive field, rounding up.
func keepAliveSeconds(d time.Duration) uint16 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	return uint16(min(s, 65535))
}

// ctxCause returns ctx's error when it caused the I/O error err: a
// cancellation, or the connection deadline that mirrors ctx's deadline
// (which can fire a moment before ctx reports it). It returns nil otherwise.
func ctxCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// start launches the reader and the pinger.
func (c *Client) start() {
	c.wg.Add(1)
	go c.readLoop()
	if c.keepAlive > 0 {
		c.wg.Add(1)
		go c.pingLoop()
	}
}

// ClientID returns the client identifier in use: the one in Options, or
// the one a 5.0 server assigned.
func (c *Client) ClientID() string { return c.clientID }

// Version returns the protocol version of the connection.
func (c *Client) Version() packet.Version { return c.version }

// SessionPresent reports the CONNACK session present flag.
func (c *Client) SessionPresent() bool { return c.connack.SessionPresent }

// Messages returns the channel of inbound PUBLISH packets. It is closed
// when the connection ends. The reader waits while the channel is full, so
// a caller that subscribes must drain it: an undrained channel stalls
// acknowledgements of the caller's own publishes too. Inbound QoS 1 and 2
// messages are acknowledged once they are in the channel.
func (c *Client) Messages() <-chan *packet.Publish { return c.msgs }

// Done returns a channel closed when the connection is shut down.
func (c *Client) Done() <-chan struct{} { return c.closing }

// Err returns why the connection ended: ErrClosed after Close or
// Disconnect, an error wrapping ErrConnectionLost otherwise (a server
// DISCONNECT wraps its packet.ReasonCode), or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

// Disconnect sends DISCONNECT (normal disconnection; the server discards
// the will) and closes the connection. It returns the write error, if any.
func (c *Client) Disconnect() error {
	c.userClose.Store(true)
	err := c.writeDeadline(&packet.Disconnect{}, time.Now().Add(time.Second))
	c.Close()
	if err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Close closes the connection without DISCONNECT (so the server publishes
// the will), then waits for the client's goroutines to end. Pending calls
// return ErrClosed. Close is idempotent.
func (c *Client) Close() {
	c.userClose.Store(true)
	c.shutdown(ErrClosed)
	c.wg.Wait()
}

// shutdown records err as the first cause and closes the connection.
func (c *Client) shutdown(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.userClose.Load() {
			err = ErrClosed
		}
		c.mu.err = err
		c.mu.Unlock()
		close(c.closing)
		_ = c.nc.Close() // the connection is being abandoned; its close error changes nothing
	})
}
