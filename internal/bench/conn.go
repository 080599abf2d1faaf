package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// errMalformed reports a packet from the broker the load generator cannot parse.
var errMalformed = errors.New("bench: malformed packet from broker")

// readBufSize is the size of a connection's read buffer; a packet that fits
// is parsed in place without copying.
const readBufSize = 64 << 10

// flushSize is how many encoded bytes a publisher gathers before it writes.
const flushSize = 16 << 10

// conn is a lean MQTT connection for load generation: it encodes into a
// reused buffer and parses PUBLISH frames in place from a bufio.Reader, so
// that the load generator spends its CPU on the broker, not on itself.
// Writes are serialised by wmu because a publisher's ack reader writes
// PUBREL while its writer writes PUBLISH.
type conn struct {
	nc      net.Conn     // what MQTT is spoken on: tcp, or TLS or WebSocket over it
	tcp     *net.TCPConn // the connection under nc
	br      *bufio.Reader
	v       packet.Version
	scratch []byte // body of a packet larger than the read buffer

	wmu  sync.Mutex
	wbuf []byte

	closing atomic.Bool // the run closed the connection
}

// dialOpts are the CONNECT parameters of a bench connection.
type dialOpts struct {
	addr          string
	clientID      string
	clean         bool
	sessionExpiry uint32 // 5.0 only
	version       packet.Version
	readBuf       int          // 0: readBufSize
	local         *net.TCPAddr // source address; nil: the system's choice
	tr            *transport   // TLS or WebSocket over the TCP connection; nil: plain
}

// dial connects and completes CONNECT/CONNACK. It returns the CONNACK too
// (for the 5.0 receive maximum).
func dial(ctx context.Context, o dialOpts) (*conn, *packet.Connack, error) {
	var d net.Dialer
	if o.local != nil { // a nil *net.TCPAddr in LocalAddr would be a non-nil net.Addr
		d.LocalAddr = o.local
	}
	raw, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := raw.(*net.TCPConn) // a "tcp" dial gives one
	var nc net.Conn = tc
	if o.tr != nil {
		if nc, err = o.tr.open(ctx, tc); err != nil {
			return nil, nil, err
		}
	}
	size := o.readBuf
	if size == 0 {
		size = readBufSize
	}
	c := &conn{nc: nc, tcp: tc, br: bufio.NewReaderSize(nc, size), v: o.version}
	cp := &packet.Connect{ClientID: o.clientID, CleanStart: o.clean, KeepAlive: 0}
	if o.version == packet.V5 && o.sessionExpiry > 0 {
		cp.Properties.SessionExpiryInterval = o.sessionExpiry
		cp.Properties.Set(packet.PropSessionExpiryInterval)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline) // a failure shows up as a read error below
	}
	if err := c.send(cp); err != nil {
		_ = nc.Close() // the send error is the one to report
		return nil, nil, err
	}
	p, err := c.readPacket()
	if err != nil {
		_ = nc.Close() // the read error is the one to report
		return nil, nil, fmt.Errorf("bench: waiting for CONNACK: %w", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		_ = nc.Close() // the protocol error is the one to report
		return nil, nil, fmt.Errorf("bench: expected CONNACK, got %v", p.Type())
	}
	if ack.ReasonCode != packet.Success {
		_ = nc.Close() // the refusal is the one to report
		return nil, nil, fmt.Errorf("bench: CONNECT refused: %w", ack.ReasonCode)
	}
	_ = nc.SetDeadline(time.Time{}) // clearing a deadline on a live conn does not fail
	return c, ack, nil
}

// send encodes p and writes it at once.
func (c *conn) send(p packet.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	if c.wbuf, err = p.Append(c.wbuf[:0], c.v); err != nil {
		return err
	}
	_, err = c.nc.Write(c.wbuf)
	return err
}

// subscribe sends SUBSCRIBE and waits for the SUBACK, failing when the
// filter is refused. Call it before any read loop runs.
func (c *conn) subscribe(ctx context.Context, filter string, qos byte) error {
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.nc.SetReadDeadline(deadline) // a failure shows up as a read error
		defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	}
	if err := c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}); err != nil {
		return err
	}
	for {
		p, err := c.readPacket()
		if err != nil {
			return fmt.Errorf("bench: waiting for SUBACK: %w", err)
		}
		ack, ok := p.(*packet.Suback)
		if !ok {
			continue // e.g. a PUBLISH of an earlier session: ignore
		}
		if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] >= 0x80 {
			return fmt.Errorf("bench: subscription to %q refused: %v", filter, ack.ReasonCodes)
		}
		return nil
	}
}

// readPacket decodes the next packet in full with the codec (slow path,
// for handshakes).
func (c *conn) readPacket() (packet.Packet, error) {
	h, body, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	return packet.Decode(h, body, c.v)
}

// readFrame returns the next packet's first byte and body. The body is
// valid until the next read.
func (c *conn) readFrame() (byte, []byte, error) {
	h, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	rem, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errMalformed
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		rem |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	if rem <= c.br.Size() {
		body, err := c.br.Peek(rem)
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		_, _ = c.br.Discard(rem) // Peek returned rem bytes, so Discard cannot fail
		return h, body, nil
	}
	if cap(c.scratch) < rem {
		c.scratch = make([]byte, rem)
	}
	c.scratch = c.scratch[:rem]
	if _, err := io.ReadFull(c.br, c.scratch); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return h, c.scratch, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parsePublish splits a PUBLISH body into topic, packet id and payload
// without copying.
func parsePublish(h byte, body []byte, v packet.Version) (topic []byte, pid uint16, payload []byte, err error) {
	qos := h >> 1 & 3
	if len(body) < 2 {
		return nil, 0, nil, errMalformed
	}
	n := int(binary.BigEndian.Uint16(body))
	off := 2 + n
	if off > len(body) {
		return nil, 0, nil, errMalformed
	}
	topic = body[2:off]
	if qos > 0 {
		if off+2 > len(body) {
			return nil, 0, nil, errMalformed
		}
		pid = binary.BigEndian.Uint16(body[off:])
		off += 2
	}
	if v == packet.V5 {
		plen, k := uvarint(body[off:])
		if k == 0 || off+k+plen > len(body) {
			return nil, 0, nil, errMalformed
		}
		off += k + plen
	}
	return topic, pid, body[off:], nil
}

// uvarint decodes an MQTT variable byte integer; k is 0 when b is malformed.
func uvarint(b []byte) (v, k int) {
	shift := 0
	for i := 0; i < 4 && i < len(b); i++ {
		v |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

// ackID returns the packet identifier at the start of an ack's body.
func ackID(body []byte) (uint16, error) {
	if len(body) < 2 {
		return 0, errMalformed
	}
	return binary.BigEndian.Uint16(body), nil
}

// appendAck appends a 3.x-form (and 5.0 short-form, success) PUBACK,
// PUBREC, PUBREL or PUBCOMP.
func appendAck(dst []byte, t packet.Type, pid uint16) []byte {
	h := byte(t) << 4
	if t == packet.PUBREL {
		h |= 2
	}
	return append(dst, h, 2, byte(pid>>8), byte(pid))
}

// close closes the network connection.
func (c *conn) close() {
	c.closing.Store(true)
	_ = c.nc.Close() // closing an already-closed conn is harmless
}

// ended reports whether err, from a read or write on c, is the end of a
// connection the run closed (or no error): whatever TLS or WebSocket
// report then, a close frame, a canceled read, is not a failure.
func (c *conn) ended(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || c.closing.Load()
}

// abort closes with a reset (SO_LINGER 0): the connection leaves no socket
// in TIME_WAIT, whose thousands would slow the port search of the next
// run's connects.
func (c *conn) abort() {
	c.closing.Store(true)
	_ = c.tcp.SetLinger(0) // best effort: a plain close follows anyway
	_ = c.tcp.Close()      // first, so that TLS and WebSocket send no goodbye
	c.close()
}

// disconnect sends DISCONNECT (best effort) and closes.
func (c *conn) disconnect() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second)) // best effort
	_ = c.send(&packet.Disconnect{})                       // best effort: the connection closes anyway
	c.close()
}
