package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/client"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var versions = []packet.Version{packet.V31, packet.V311, packet.V5}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mqtttest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client and closes it when the test ends.
func dial(t *testing.T, addr string, o client.Options) *client.Client {
	t.Helper()
	o.Addr = addr
	c, err := client.Dial(testContext(t), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// expectMessage returns the next message of c, failing after a timeout.
func expectMessage(t *testing.T, c *client.Client) *packet.Publish {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("Messages closed: %v", c.Err())
		}
		return m
	case <-time.After(mqtttest.Timeout):
		t.Fatalf("no message within %v", mqtttest.Timeout)
	}
	return nil
}

func expectNoMessage(t *testing.T, c *client.Client, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.Messages():
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

func subscribe(t *testing.T, c *client.Client, filter string, qos byte) {
	t.Helper()
	codes, err := c.Subscribe(testContext(t), packet.Subscription{Filter: filter, QoS: qos})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if len(codes) != 1 || codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("SUBACK %v, want granted QoS %d", codes, qos)
	}
}

func TestConnect(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			_, addr := mqtttest.StartBroker(t, broker.Options{})
			c := dial(t, addr, client.Options{ClientID: "c1", Version: v, CleanStart: true, KeepAlive: 30 * time.Second})
			if c.ClientID() != "c1" || c.Version() != v || c.SessionPresent() {
				t.Fatalf("ClientID %q Version %v SessionPresent %v", c.ClientID(), c.Version(), c.SessionPresent())
			}
			if err := c.Disconnect(); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			if !errors.Is(c.Err(), client.ErrClosed) {
				t.Fatalf("Err() = %v, want ErrClosed", c.Err())
			}
			if _, ok := <-c.Messages(); ok {
				t.Fatal("Messages not closed after Disconnect")
			}
			if err := c.Publish(testContext(t), "a", nil, 0, false); !errors.Is(err, client.ErrClosed) {
				t.Fatalf("Publish after Disconnect: %v, want ErrClosed", err)
			}
		})
	}
}

func TestAssignedClientID(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := dial(t, addr, client.Options{Version: packet.V5, CleanStart: true})
	if !strings.HasPrefix(c.ClientID(), "petrel-") {
		t.Fatalf("assigned client id %q", c.ClientID())
	}
}

// deny refuses every client with a reason code.
type deny struct{ code packet.ReasonCode }

func (d deny) Authenticate(context.Context, *broker.ConnectInfo) (*broker.Identity, error) {
	return nil, d.code
}

func TestConnectRefused(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: deny{packet.NotAuthorized}})
			c, err := client.Dial(testContext(t), client.Options{Addr: addr, ClientID: "c1", Version: v, CleanStart: true})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want refusal")
			}
			if !errors.Is(err, client.ErrRefused) {
				t.Fatalf("err %v does not wrap ErrRefused", err)
			}
			var rc packet.ReasonCode
			if !errors.As(err, &rc) || rc != packet.NotAuthorized {
				t.Fatalf("reason code %v, want not authorized", rc)
			}
			if got, want := err.Error(), "client: connection refused: not authorized (0x87)"; got != want {
				t.Fatalf("error %q, want %q", got, want)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	// A server that accepts and says nothing: Dial ends at ConnectTimeout.
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		<-time.After(2 * time.Second)
		_ = nc.Close() // test server
	}()
	start := time.Now()
	_, err = client.Dial(context.Background(), client.Options{Addr: addr, ConnectTimeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server: %v, want deadline exceeded", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("Dial took %v", time.Since(start))
	}
	_ = ln.Close() // test listener
	<-done
	if _, err := client.Dial(context.Background(), client.Options{Addr: addr}); err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	if _, err := client.Dial(context.Background(), client.Options{Addr: addr, Version: 7}); err == nil {
		t.Fatal("Dial with version 7 succeeded")
	}
}

func TestPubSub(t *testing.T) {
	for _, v := range versions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%v/qos%d", v, qos), func(t *testing.T) {
				_, addr := mqtttest.StartBroker(t, broker.Options{})
				sub := dial(t, addr, client.Options{ClientID: "sub", Version: v, CleanStart: true})
				pub := dial(t, addr, client.Options{ClientID: "pub", Version: v, CleanStart: true})
				subscribe(t, sub, "a/+", qos)
				ctx := testContext(t)
				for i := range 20 {
					if err := pub.Publish(ctx, "a/b", fmt.Appendf(nil, "m%d", i), qos, false); err != nil {
						t.Fatalf("Publish %d: %v", i, err)
					}
				}
				for i := range 20 {
					m := expectMessage(t, sub)
					if m.Topic != "a/b" || string(m.Payload) != fmt.Sprintf("m%d", i) || m.QoS != qos || m.Retain {
						t.Fatalf("message %d: %+v", i, m)
					}
				}
				if _, err := sub.Unsubscribe(ctx, "a/+"); err != nil {
					t.Fatalf("Unsubscribe: %v", err)
				}
				if err := pub.Publish(ctx, "a/b", []byte("after"), qos, false); err != nil {
					t.Fatalf("Publish: %v", err)
				}
				expectNoMessage(t, sub, 100*time.Millisecond)
			})
		}
	}
}

func TestConcurrentPublish(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub := dial(t, addr, client.Options{ClientID: "sub", Version: packet.V5, CleanStart: true})
	pub := dial(t, addr, client.Options{ClientID: "pub", Version: packet.V5, CleanStart: true})
	subscribe(t, sub, "#", 2)
	const workers, each = 8, 50
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := 0; i < each && err == nil; i++ {
				err = pub.Publish(testContext(t), fmt.Sprintf("w/%d", w), []byte{byte(i)}, byte(i%3), false)
			}
			errc <- err
		}()
	}
	got := 0
	for got < workers*each {
		expectMessage(t, sub)
		got++
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

func TestRetained(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			_, addr := mqtttest.StartBroker(t, broker.Options{})
			pub := dial(t, addr, client.Options{ClientID: "pub", Version: v, CleanStart: true})
			if err := pub.Publish(testContext(t), "r/1", []byte("kept"), 1, true); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			sub := dial(t, addr, client.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, "r/#", 1)
			m := expectMessage(t, sub)
			if m.Topic != "r/1" || string(m.Payload) != "kept" || !m.Retain || m.QoS != 1 {
				t.Fatalf("retained message %+v", m)
			}
			// An empty retained payload clears it.
			if err := pub.Publish(testContext(t), "r/1", nil, 1, true); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			expectMessage(t, sub)
			sub2 := dial(t, addr, client.Options{ClientID: "sub2", Version: v, CleanStart: true})
			subscribe(t, sub2, "r/#", 1)
			expectNoMessage(t, sub2, 100*time.Millisecond)
		})
	}
}

func TestWill(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			_, addr := mqtttest.StartBroker(t, broker.Options{})
			sub := dial(t, addr, client.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, "will/#", 1)
			will := &packet.Will{Topic: "will/w1", Payload: []byte("gone"), QoS: 1}

			// A normal DISCONNECT discards the will.
			w := dial(t, addr, client.Options{ClientID: "w1", Version: v, CleanStart: true, Will: will})
			if err := w.Disconnect(); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			expectNoMessage(t, sub, 200*time.Millisecond)

			// Closing without DISCONNECT publishes it.
			w = dial(t, addr, client.Options{ClientID: "w1", Version: v, CleanStart: true, Will: will})
			w.Close()
			m := expectMessage(t, sub)
			if m.Topic != "will/w1" || !bytes.Equal(m.Payload, []byte("gone")) || m.QoS != 1 {
				t.Fatalf("will %+v", m)
			}
		})
	}
}

func TestPersistentSession(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	o := client.Options{ClientID: "p", Version: packet.V311}
	sub := dial(t, addr, o)
	subscribe(t, sub, "q/#", 1)
	if err := sub.Disconnect(); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, addr, client.Options{ClientID: "pub", Version: packet.V311, CleanStart: true})
	if err := pub.Publish(testContext(t), "q/1", []byte("queued"), 1, false); err != nil {
		t.Fatal(err)
	}
	sub = dial(t, addr, o)
	if !sub.SessionPresent() {
		t.Fatal("session not present")
	}
	if m := expectMessage(t, sub); string(m.Payload) != "queued" {
		t.Fatalf("queued message %+v", m)
	}
}

func TestKeepAlive(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c := dial(t, addr, client.Options{ClientID: "k", Version: packet.V311, CleanStart: true, KeepAlive: time.Second})
	// The broker closes after 1.5 keepalive periods of silence; the pings
	// keep the connection open well past that.
	time.Sleep(2500 * time.Millisecond)
	if err := c.Err(); err != nil {
		t.Fatalf("connection ended: %v", err)
	}
	if n := b.Stats().Clients; n != 1 {
		t.Fatalf("broker has %d clients, want 1", n)
	}
}

func TestServerGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(srv)
			return
		}
		if _, err := packet.ReadPacket(nc, packet.V311, 0); err == nil {
			buf, _ := (&packet.Connack{}).Append(nil, packet.V311)
			_, _ = nc.Write(buf) // a failure shows as a Dial error
		}
		srv <- nc
	}()
	c, err := client.Dial(testContext(t), client.Options{Addr: ln.Addr().String(), ClientID: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := <-srv
	_ = nc.Close() // the server goes away

	if _, ok := <-c.Messages(); ok {
		t.Fatal("message from a closed server")
	}
	if !errors.Is(c.Err(), client.ErrConnectionLost) {
		t.Fatalf("Err() = %v, want ErrConnectionLost", c.Err())
	}
	<-c.Done()
	if err := c.Publish(testContext(t), "a", nil, 1, false); !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("Publish on a lost connection: %v", err)
	}
}

// TestInboundQoS2 drives the client from a raw server: a QoS 2 message sent
// twice before PUBREL is delivered once, and each step is acknowledged.
func TestInboundQoS2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(srv)
			return
		}
		srv <- nc
	}()
	type result struct {
		c   *client.Client
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := client.Dial(context.Background(), client.Options{Addr: ln.Addr().String(), ClientID: "q2"})
		res <- result{c, err}
	}()
	nc := <-srv
	defer nc.Close()
	v := packet.V311
	send := func(p packet.Packet) {
		t.Helper()
		buf, err := p.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want packet.Packet) {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(mqtttest.Timeout))
		p, err := packet.ReadPacket(nc, v, 0)
		if err != nil {
			t.Fatalf("reading %s: %v", want.Type(), err)
		}
		if fmt.Sprintf("%#v", p) != fmt.Sprintf("%#v", want) {
			t.Fatalf("got %#v, want %#v", p, want)
		}
	}
	if _, err := packet.ReadPacket(nc, v, 0); err != nil {
		t.Fatal(err)
	}
	send(&packet.Connack{})
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c
	defer c.Close()

	pub := &packet.Publish{Topic: "t", QoS: 2, PacketID: 7, Payload: []byte("x")}
	send(pub)
	expect(&packet.Pubrec{PacketID: 7})
	dup := *pub
	dup.Dup = true
	send(&dup)
	expect(&packet.Pubrec{PacketID: 7})
	send(&packet.Pubrel{PacketID: 7})
	expect(&packet.Pubcomp{PacketID: 7})
	send(&packet.Publish{Topic: "t", QoS: 1, PacketID: 8, Payload: []byte("y")})
	expect(&packet.Puback{PacketID: 8})

	if m := expectMessage(t, c); string(m.Payload) != "x" {
		t.Fatalf("first message %q", m.Payload)
	}
	if m := expectMessage(t, c); string(m.Payload) != "y" {
		t.Fatalf("second message %q, want y (the duplicate must not be delivered)", m.Payload)
	}
}

// TestAbandonedQoS2 cancels a QoS 2 publish before PUBREC: the client
// finishes the flow itself, so the packet identifier is not reused early.
func TestAbandonedQoS2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(srv)
			return
		}
		if _, err := packet.ReadPacket(nc, packet.V311, 0); err == nil {
			buf, _ := (&packet.Connack{}).Append(nil, packet.V311)
			_, _ = nc.Write(buf) // a failure shows as a Dial error
		}
		srv <- nc
	}()
	c, err := client.Dial(testContext(t), client.Options{Addr: ln.Addr().String(), ClientID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := <-srv
	defer nc.Close()
	read := func() packet.Packet {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(mqtttest.Timeout))
		p, err := packet.ReadPacket(nc, packet.V311, 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(ctx, "t", []byte("x"), 2, false) }()
	p, ok := read().(*packet.Publish)
	if !ok || p.QoS != 2 {
		t.Fatalf("expected QoS 2 PUBLISH, got %#v", p)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish: %v, want canceled", err)
	}
	buf, _ := (&packet.Pubrec{PacketID: p.PacketID}).Append(nil, packet.V311)
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	if rel, ok := read().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("expected PUBREL %d, got %#v", p.PacketID, rel)
	}
	// A second publish does not reuse the identifier still in flight.
	go func() { errc <- c.Publish(context.Background(), "t", []byte("y"), 1, false) }()
	p2, ok := read().(*packet.Publish)
	if !ok || p2.PacketID == p.PacketID {
		t.Fatalf("second PUBLISH %#v reuses id %d", p2, p.PacketID)
	}
	buf, _ = (&packet.Puback{PacketID: p2.PacketID}).Append(nil, packet.V311)
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestInvalidArguments(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := dial(t, addr, client.Options{ClientID: "x", CleanStart: true})
	ctx := testContext(t)
	if err := c.Publish(ctx, "a/+", nil, 0, false); err == nil {
		t.Fatal("publish to a wildcard topic accepted")
	}
	if err := c.Publish(ctx, "a", nil, 3, false); err == nil {
		t.Fatal("publish at QoS 3 accepted")
	}
	if _, err := c.Subscribe(ctx, packet.Subscription{Filter: "a/#/b"}); err == nil {
		t.Fatal("invalid filter accepted")
	}
	if _, err := c.Subscribe(ctx); err == nil {
		t.Fatal("empty subscribe accepted")
	}
	// The connection is still usable.
	if err := c.Publish(ctx, "a", []byte("ok"), 1, false); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}
