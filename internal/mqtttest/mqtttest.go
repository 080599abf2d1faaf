// Package mqtttest holds test helpers: a broker on 127.0.0.1:0 and a raw
// packet-level client that speaks the codec directly, so tests can send
// exactly the bytes a clause is about.
package mqtttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/packet"
)

// Timeout is how long helpers wait for an expected packet.
const Timeout = 5 * time.Second

// StartBroker starts a broker with o on 127.0.0.1:0 and shuts it down when
// the test ends. It returns the broker and its address. The broker serves
// as `petrel serve` does: o.RawTransport is set.
func StartBroker(t testing.TB, o broker.Options) (*broker.Broker, string) {
	t.Helper()
	o.RawTransport = true
	if o.Logger == nil {
		level := slog.LevelError
		if os.Getenv("PETREL_TEST_LOG") != "" {
			level = slog.LevelDebug
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	b, err := broker.New(o)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
	})
	return b, ln.Addr().String()
}

// Client is a raw MQTT client for tests: it sends packets as given and
// returns what arrives, one packet at a time.
type Client struct {
	t       testing.TB
	Conn    net.Conn
	Version packet.Version
}

// Dial connects to addr without sending anything. The connection is closed
// when the test ends.
func Dial(t testing.TB, addr string, v packet.Version) *Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() }) // closing twice is harmless here
	return &Client{t: t, Conn: nc, Version: v}
}

// Connect dials addr and completes a CONNECT with the given client id and
// clean flag, failing the test unless the CONNACK accepts it.
func Connect(t testing.TB, addr string, v packet.Version, id string, clean bool) (*Client, *packet.Connack) {
	t.Helper()
	c := Dial(t, addr, v)
	ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60})
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v, want success", ack.ReasonCode)
	}
	return c, ack
}

// Connect sends p (protocol name and version filled in from the client when
// empty) and returns the CONNACK.
func (c *Client) Connect(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	if p.Version == 0 {
		p.Version = c.Version
	}
	if p.ProtocolName == "" {
		p.ProtocolName = "MQTT"
		if p.Version == packet.V31 {
			p.ProtocolName = "MQIsdp"
		}
	}
	c.Send(p)
	ack, ok := c.Expect().(*packet.Connack)
	if !ok {
		c.t.Fatalf("expected CONNACK")
	}
	return ack
}

// Send encodes and writes p.
func (c *Client) Send(p packet.Packet) {
	c.t.Helper()
	buf, err := p.Append(nil, c.Version)
	if err != nil {
		c.t.Fatalf("encode %s: %v", p.Type(), err)
	}
	c.SendRaw(buf)
}

// SendRaw writes bytes as they are.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.Conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Read returns the next packet or the read error, waiting up to d.
//
// d bounds the wait for the packet's first byte only: once a packet has
// begun, the rest has Timeout to arrive, so that a short d never ends a
// read in the middle of a packet, which would leave the stream out of step
// for every later Read (a loop of short Reads meeting a burst at its
// deadline lost whole packets that way).
func (c *Client) Read(d time.Duration) (packet.Packet, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	var first [1]byte
	if _, err := io.ReadFull(c.Conn, first[:]); err != nil {
		return nil, err
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(Timeout)); err != nil {
		return nil, err
	}
	return packet.ReadPacket(io.MultiReader(bytes.NewReader(first[:]), c.Conn), c.Version, 0)
}

// Expect returns the next packet, failing the test if none arrives in Timeout.
func (c *Client) Expect() packet.Packet {
	c.t.Helper()
	p, err := c.Read(Timeout)
	if err != nil {
		c.t.Fatalf("expected a packet: %v", err)
	}
	return p
}

// ExpectPublish returns the next packet, failing unless it is a PUBLISH.
func (c *Client) ExpectPublish() *packet.Publish {
	c.t.Helper()
	p := c.Expect()
	pub, ok := p.(*packet.Publish)
	if !ok {
		c.t.Fatalf("expected PUBLISH, got %s", p.Type())
	}
	return pub
}

// ExpectNone fails the test if a packet arrives within d.
func (c *Client) ExpectNone(d time.Duration) {
	c.t.Helper()
	p, err := c.Read(d)
	if err == nil {
		c.t.Fatalf("expected nothing, got %s %+v", p.Type(), p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("expected nothing, connection failed: %v", err)
	}
}

// ExpectClosed fails the test unless the broker closes the connection
// within Timeout; packets arriving before the close are returned.
func (c *Client) ExpectClosed() []packet.Packet {
	c.t.Helper()
	var got []packet.Packet
	deadline := time.Now().Add(Timeout)
	for {
		p, err := c.Read(time.Until(deadline))
		if err == nil {
			got = append(got, p)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection not closed within %v", Timeout)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return got
		}
		c.t.Fatalf("expected close, got error %v", err)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// Subscribe subscribes to filter at qos and returns the SUBACK codes.
func (c *Client) Subscribe(pid uint16, subs ...packet.Subscription) []packet.ReasonCode {
	c.t.Helper()
	c.Send(&packet.Subscribe{PacketID: pid, Subscriptions: subs})
	p := c.Expect()
	ack, ok := p.(*packet.Suback)
	if !ok {
		c.t.Fatalf("expected SUBACK, got %s", p.Type())
	}
	if ack.PacketID != pid {
		c.t.Fatalf("SUBACK packet id %d, want %d", ack.PacketID, pid)
	}
	return ack.ReasonCodes
}

// Eventually polls cond every 10ms until it holds, failing after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// NewClient wraps an established connection (TLS, WebSocket, ...) as a
// Client; the connection is closed when the test ends.
func NewClient(t testing.TB, nc net.Conn, v packet.Version) *Client {
	t.Cleanup(func() { _ = nc.Close() }) // closing twice is harmless here
	return &Client{t: t, Conn: nc, Version: v}
}

// StartOn starts a broker with o serving the listener lc (a ws or tls
// listener, say) on 127.0.0.1:0, shut down when the test ends. It returns
// the broker and the listener's address. As StartBroker, it sets
// o.RawTransport.
func StartOn(t testing.TB, o broker.Options, lc listener.Config) (*broker.Broker, string) {
	t.Helper()
	o.RawTransport = true
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if lc.Address == "" {
		lc.Address = "127.0.0.1:0"
	}
	ln, err := listener.Listen(context.Background(), lc, nil)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b, err := broker.New(o)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
		_ = ln.Close() // Shutdown closed it already
	})
	return b, ln.Addr().String()
}
