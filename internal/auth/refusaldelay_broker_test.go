package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// startHeldBroker starts a broker on 127.0.0.1:0 (raw transport, as
// `petrel serve`) authenticating with a Service built from c, with broker
// options o, and returns the three.
func startHeldBroker(t *testing.T, c Config, o broker.Options) (*Service, *broker.Broker, string) {
	t.Helper()
	s, err := New(c, Options{Logger: quietLogger(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	o.Authenticator, o.Authorizer = s, s
	b, addr := mqtttest.StartBroker(t, o)
	return s, b, addr
}

// sendConnect dials addr from the local address from, sends a CONNECT
// with the credentials and returns the connection unread.
func sendConnect(t *testing.T, from, addr string, v packet.Version, user, pass string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	p := &packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: "c-" + user, CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)}
	buf, err := p.Append(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	return nc
}

// readConnack reads the CONNACK on nc, then expects the broker to close.
func readConnack(t *testing.T, nc net.Conn, v packet.Version) packet.ReasonCode {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(mqtttest.Timeout))
	pk, err := packet.ReadPacket(nc, v, 0)
	if err != nil {
		t.Fatalf("reading CONNACK: %v", err)
	}
	ack, ok := pk.(*packet.Connack)
	if !ok {
		t.Fatalf("got %s, want CONNACK", pk.Type())
	}
	// A refusing CONNACK is followed by the close [MQTT-3.2.2-5] [MQTT-3.2.2-6].
	if ack.ReasonCode.IsError() {
		if _, err := nc.Read(make([]byte, 1)); err == nil {
			t.Fatal("refused connection still open after its CONNACK")
		}
	}
	return ack.ReasonCode
}

// expectClosedWithoutConnack asserts the broker closes nc without writing
// anything.
func expectClosedWithoutConnack(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(mqtttest.Timeout))
	n, err := nc.Read(make([]byte, 16))
	var ne net.Error
	if n > 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %d bytes, %v: want the connection closed without a CONNACK", n, err)
	}
	if !errors.Is(err, io.EOF) && !errors.As(err, new(*net.OpError)) {
		t.Fatalf("read: %v, want EOF or reset", err)
	}
}

// TestThrottledRefusalHeld: a CONNECT refused by a name's failure limit
// gets its CONNACK (0x9F; 3.1.1: 3) only after refusal_delay, from the
// broker's held refusals (counted while it waits), then the close
// [MQTT-3.2.2-5] [MQTT-3.2.2-6]. Wrong passwords before the limit, a
// right one, and a (name, address) pair that authenticated before and
// ran out of its own failures are answered at once: nothing held.
func TestThrottledRefusalHeld(t *testing.T) {
	const delay = 300 * time.Millisecond
	hash := bcryptHash(t, "pw", 4)
	s, b, addr := startHeldBroker(t, Config{UsersFile: writeUsers(t,
		"  - {username: victim, password: '"+hash+"', tenant: A}\n"),
		Checks: PasswordChecks{UserFailures: 2, RefusalDelay: delay}}, broker.Options{})

	// The pair (victim, 127.0.0.1) authenticates: it has its own bucket.
	if code := readConnack(t, sendConnect(t, "127.0.0.1", addr, packet.V5, "victim", "pw"), packet.V5); code != packet.Success {
		t.Fatalf("right password: %v", code)
	}
	// From elsewhere, two wrong guesses are answered at once (0x86).
	for range 2 {
		if code := readConnack(t, sendConnect(t, "127.0.0.2", addr, packet.V5, "victim", "guess"), packet.V5); code != packet.BadUsernameOrPassword {
			t.Fatalf("guess: %v, want 0x86", code)
		}
	}
	if h := b.Stats().Held; h.Holds != 0 {
		t.Fatalf("refusals before the limit were held: %+v", h)
	}

	// The name is now over its limit: the next guess is held.
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		holds := b.Stats().Held.Holds
		sent := time.Now()
		nc := sendConnect(t, "127.0.0.2", addr, v, "victim", "guess")
		// Held: counted while nothing has been written (the count drops
		// before the CONNACK is written).
		mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().Held.Held == 1 }, "the refusal held")
		want := packet.ConnectionRateExceeded
		if v != packet.V5 {
			want = packet.ServerUnavailable // 3.x has no 0x9F
		}
		if code := readConnack(t, nc, v); code != want {
			t.Fatalf("%v: CONNACK %v, want %v", v, code, want)
		}
		// A timer never fires early: the answer came after the delay.
		if el := time.Since(sent); el < delay {
			t.Fatalf("%v: throttled CONNECT answered after %v, before the %v delay", v, el, delay)
		}
		if h := b.Stats().Held; h.Held != 0 || h.Holds != holds+1 {
			t.Fatalf("%v: held refusals %+v, want one more hold, none left", v, h)
		}
	}
	if st := s.Stats(); st.ThrottledName != 2 {
		t.Fatalf("throttled refusals %d, want 2", st.ThrottledName)
	}

	// The known pair spends its own bucket, then is refused with 0x9F
	// at once: never held.
	for range 2 {
		if code := readConnack(t, sendConnect(t, "127.0.0.1", addr, packet.V5, "victim", "guess"), packet.V5); code != packet.BadUsernameOrPassword {
			t.Fatalf("known pair guess: %v", code)
		}
	}
	holds := b.Stats().Held.Holds
	if code := readConnack(t, sendConnect(t, "127.0.0.1", addr, packet.V5, "victim", "guess"), packet.V5); code != packet.ConnectionRateExceeded {
		t.Fatalf("known pair over its own limit: %v, want 0x9F", code)
	}
	if h := b.Stats().Held; h.Holds != holds {
		t.Fatalf("a known pair's refusal was held: %+v", h)
	}
}

// TestHeldRefusalsBounded: held refusals are bounded per address and in
// all, and hold no goroutine each. Past its address's share a new
// connection is closed at accept without a CONNACK; past the global bound
// a throttled CONNECT is answered at once. An honest client connects
// while the bounds are full, and Shutdown answers every held refusal.
func TestHeldRefusalsBounded(t *testing.T) {
	const perAddr, total = 4, 6
	hash := bcryptHash(t, "pw", 4)
	_, b, addr := startHeldBroker(t, Config{UsersFile: writeUsers(t,
		"  - {username: victim, password: '"+hash+"', tenant: A}\n",
		"  - {username: honest, password: '"+hash+"', tenant: A}\n"),
		Checks: PasswordChecks{UserFailures: 1, RefusalDelay: time.Hour}},
		broker.Options{HeldRefusals: total, HeldRefusalsPerAddress: perAddr})
	if code := readConnack(t, sendConnect(t, "127.0.0.9", addr, packet.V311, "victim", "guess"), packet.V311); code != packet.BadUsernameOrPassword {
		t.Fatalf("first guess: %v", code)
	}
	before := runtime.NumGoroutine()

	var held []net.Conn
	for i := range perAddr {
		held = append(held, sendConnect(t, "127.0.0.2", addr, packet.V311, "victim", "guess"))
		mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().Held.Held == i+1 }, "a refusal held")
	}
	// The address's share is full: closed at accept.
	expectClosedWithoutConnack(t, sendConnect(t, "127.0.0.2", addr, packet.V311, "victim", "guess"))
	if h := b.Stats().Held; h.AtAccept != 1 || h.Held != perAddr {
		t.Fatalf("over the address's share: %+v, want one closed at accept", h)
	}
	// Another address fills the global bound.
	for i := perAddr; i < total; i++ {
		held = append(held, sendConnect(t, "127.0.0.3", addr, packet.V311, "victim", "guess"))
		mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().Held.Held == i+1 }, "a refusal held")
	}
	// Over the global bound: answered at once.
	if code := readConnack(t, sendConnect(t, "127.0.0.4", addr, packet.V311, "victim", "guess"), packet.V311); code != packet.ServerUnavailable {
		t.Fatalf("over the global bound: %v, want 3", code)
	}
	if h := b.Stats().Held; h.Overflow != 1 || h.Held != total {
		t.Fatalf("over the global bound: %+v, want one answered at once", h)
	}
	// No goroutine waits per held connection: the readers of the six
	// refused connections end (a margin of 3 for the broker's and the
	// runtime's own).
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return runtime.NumGoroutine() <= before+3 },
		"the held connections' goroutines to end")

	// An honest client is not delayed by any of it.
	if code := readConnack(t, sendConnect(t, "127.0.0.5", addr, packet.V5, "honest", "pw"), packet.V5); code != packet.Success {
		t.Fatalf("honest client during the storm: %v", code)
	}

	// Shutdown answers the held refusals at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, nc := range held {
		if code := readConnack(t, nc, packet.V311); code != packet.ServerUnavailable {
			t.Fatalf("held refusal at shutdown: %v, want 3", code)
		}
	}
	if h := b.Stats().Held; h.Held != 0 {
		t.Fatalf("held after shutdown: %+v", h)
	}
}
