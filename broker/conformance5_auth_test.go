package broker_test

// Conformance: MQTT 5.0 sections 4.12 (enhanced authentication), 4.12.1
// (re-authentication), 3.15 (AUTH) and credential expiry (DISCONNECT 0x87).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// challengeMethod is the enhanced authentication method of challengeAuth.
const challengeMethod = "test-challenge"

// challengeAuth is a small EnhancedAuthenticator: with method
// "test-challenge" the client sends its name, the server answers a nonce
// (AUTH 0x18), and the client must send the nonce reversed. Name
// "baduser" is refused with 0x86 at once. Identities expire after ttl when
// it is set. Plain CONNECTs are accepted; username "expired" gets
// credentials that expired a second ago, "short" ones that expire in
// 300ms.
type challengeAuth struct {
	ttl time.Duration
}

func (challengeAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	id := &broker.Identity{Username: ci.Username}
	switch ci.Username {
	case "expired":
		id.ExpiresAt = time.Now().Add(-time.Second)
	case "short":
		id.ExpiresAt = time.Now().Add(300 * time.Millisecond)
	}
	return id, nil
}

func (a challengeAuth) StartAuth(_ context.Context, _ *broker.ConnectInfo, method string) (broker.AuthExchange, error) {
	if method != challengeMethod {
		return nil, packet.BadAuthenticationMethod
	}
	return &challengeExchange{ttl: a.ttl}, nil
}

type challengeExchange struct {
	ttl   time.Duration
	name  string
	nonce []byte
}

func (e *challengeExchange) Step(_ context.Context, data []byte) ([]byte, *broker.Identity, error) {
	if e.nonce == nil {
		if string(data) == "baduser" {
			return nil, nil, packet.BadUsernameOrPassword
		}
		e.name = string(data)
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails
		e.nonce = []byte(hex.EncodeToString(b[:]))
		return e.nonce, nil, nil
	}
	if string(data) != string(reversed(e.nonce)) {
		return nil, nil, packet.NotAuthorized
	}
	id := &broker.Identity{Username: e.name}
	if e.ttl > 0 {
		id.ExpiresAt = time.Now().Add(e.ttl)
	}
	return []byte("welcome " + e.name), id, nil
}

func reversed(b []byte) []byte {
	r := slices.Clone(b)
	slices.Reverse(r)
	return r
}

// authPacket5 returns an AUTH packet with code, method and data.
func authPacket5(code packet.ReasonCode, method string, data []byte) *packet.Auth {
	a := &packet.Auth{ReasonCode: code}
	a.Properties.AuthenticationMethod = method
	a.Properties.Set(packet.PropAuthenticationMethod)
	if data != nil {
		a.Properties.AuthenticationData = data
		a.Properties.Set(packet.PropAuthenticationData)
	}
	return a
}

// expectAuth reads an AUTH packet with code and the challenge method
// [MQTT-4.12.0-5] and returns its data.
func expectAuth(t *testing.T, c *mqtttest.Client, code packet.ReasonCode) []byte {
	t.Helper()
	a := expect[*packet.Auth](t, c)
	if a.ReasonCode != code {
		t.Fatalf("AUTH %v, want %v", a.ReasonCode, code)
	}
	if !a.Properties.Has(packet.PropAuthenticationMethod) || a.Properties.AuthenticationMethod != challengeMethod {
		t.Fatalf("AUTH method %q, want %q [MQTT-4.12.0-5]", a.Properties.AuthenticationMethod, challengeMethod)
	}
	return a.Properties.AuthenticationData
}

// startChallenge dials and sends CONNECT with the given method and data.
func startChallenge(t *testing.T, addr, id, method string, data []byte) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, addr, packet.V5)
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: id, CleanStart: true, KeepAlive: 60}
	p.Properties.AuthenticationMethod = method
	p.Properties.Set(packet.PropAuthenticationMethod)
	if data != nil {
		p.Properties.AuthenticationData = data
		p.Properties.Set(packet.PropAuthenticationData)
	}
	c.Send(p)
	return c
}

// challengeConnect completes a test-challenge CONNECT as name.
func challengeConnect(t *testing.T, addr, id, name string) *mqtttest.Client {
	t.Helper()
	c := startChallenge(t, addr, id, challengeMethod, []byte(name))
	nonce := expectAuth(t, c, packet.ContinueAuthentication)
	c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, reversed(nonce)))
	ack := expect[*packet.Connack](t, c)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v, want success", ack.ReasonCode)
	}
	return c
}

func TestAuth5EnhancedAuthenticationSuccess(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	c := startChallenge(t, addr, "alice", challengeMethod, []byte("alice"))
	// The broker asks for more with AUTH 0x18 carrying the method
	// [MQTT-4.12.0-2] [MQTT-4.12.0-5].
	nonce := expectAuth(t, c, packet.ContinueAuthentication)
	if len(nonce) == 0 {
		t.Fatalf("AUTH 0x18 without the challenge")
	}
	c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, reversed(nonce)))
	ack := expect[*packet.Connack](t, c)
	// A successful CONNACK carries the same Authentication Method
	// [MQTT-4.12.0-5] and the server's final data.
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v, want success", ack.ReasonCode)
	}
	if ack.Properties.AuthenticationMethod != challengeMethod {
		t.Fatalf("CONNACK Authentication Method %q, want %q [MQTT-4.12.0-5]", ack.Properties.AuthenticationMethod, challengeMethod)
	}
	if string(ack.Properties.AuthenticationData) != "welcome alice" {
		t.Fatalf("CONNACK Authentication Data %q, want %q", ack.Properties.AuthenticationData, "welcome alice")
	}
	// The connection works.
	sub5(t, c, 1, "auth/#", 1, 0)
	pub5(t, c, "auth/x", 0, false, "hi", 0)
	expectPub(t, c, "auth/x", "hi")
}

func TestAuth5EnhancedAuthenticationRefused(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	t.Run("wrong answer", func(t *testing.T) {
		t.Parallel()
		c := startChallenge(t, addr, "mallory", challengeMethod, []byte("mallory"))
		nonce := expectAuth(t, c, packet.ContinueAuthentication)
		c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, nonce)) // not reversed
		// The server refuses with a CONNACK of 0x80 or more and closes
		// [MQTT-4.12.0-4]: 0x87 here.
		expectConnackRefused(t, c, packet.NotAuthorized)
	})
	t.Run("bad user", func(t *testing.T) {
		t.Parallel()
		c := startChallenge(t, addr, "bad", challengeMethod, []byte("baduser"))
		expectConnackRefused(t, c, packet.BadUsernameOrPassword)
	})
	t.Run("unknown method", func(t *testing.T) {
		t.Parallel()
		c := startChallenge(t, addr, "unknown", "SCRAM-SHA-999", nil)
		// An unsupported method: CONNACK 0x8C and close [MQTT-4.12.0-1].
		expectConnackRefused(t, c, packet.BadAuthenticationMethod)
	})
}

func TestAuth5MethodWithoutEnhancedAuthenticator(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c := startChallenge(t, addr, "plain", challengeMethod, []byte("x"))
	// The broker supports no enhanced authentication: 0x8C [MQTT-4.12.0-1].
	expectConnackRefused(t, c, packet.BadAuthenticationMethod)
}

func TestAuth5Reauthentication(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	c := challengeConnect(t, addr, "re", "alice")
	sub5(t, c, 1, "re/#", 1, 0)
	for range 2 {
		// AUTH 0x19 with the CONNECT's method starts re-authentication
		// [MQTT-4.12.1-1]; it runs like the first one and ends with AUTH
		// 0x00 (5.0 section 4.12.1).
		c.Send(authPacket5(packet.ReAuthenticate, challengeMethod, []byte("alice")))
		nonce := expectAuth(t, c, packet.ContinueAuthentication)
		c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, reversed(nonce)))
		if data := expectAuth(t, c, packet.Success); string(data) != "welcome alice" {
			t.Fatalf("AUTH 0x00 data %q", data)
		}
	}
	// The connection goes on.
	pub5(t, c, "re/x", 0, false, "still here", 0)
	expectPub(t, c, "re/x", "still here")
}

func TestAuth5ReauthenticationFailure(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	t.Run("wrong answer", func(t *testing.T) {
		t.Parallel()
		c := challengeConnect(t, addr, "ref1", "alice")
		c.Send(authPacket5(packet.ReAuthenticate, challengeMethod, []byte("alice")))
		nonce := expectAuth(t, c, packet.ContinueAuthentication)
		c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, nonce))
		// A failed re-authentication: DISCONNECT with the reason, then
		// close [MQTT-4.12.1-2].
		expectDisconnect(t, c, packet.NotAuthorized)
	})
	t.Run("another method", func(t *testing.T) {
		t.Parallel()
		c := challengeConnect(t, addr, "ref2", "alice")
		c.Send(authPacket5(packet.ReAuthenticate, "other-method", []byte("alice")))
		// Re-authentication must use the CONNECT's method [MQTT-4.12.1-1].
		expectDisconnect(t, c, packet.ProtocolError)
	})
	t.Run("another method mid-exchange", func(t *testing.T) {
		t.Parallel()
		c := challengeConnect(t, addr, "ref3", "alice")
		c.Send(authPacket5(packet.ReAuthenticate, challengeMethod, []byte("alice")))
		nonce := expectAuth(t, c, packet.ContinueAuthentication)
		c.Send(authPacket5(packet.ContinueAuthentication, "other-method", reversed(nonce)))
		expectDisconnect(t, c, packet.ProtocolError)
	})
	t.Run("continue without re-authenticate", func(t *testing.T) {
		t.Parallel()
		c := challengeConnect(t, addr, "ref4", "alice")
		c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, []byte("x")))
		expectDisconnect(t, c, packet.ProtocolError)
	})
	t.Run("AUTH without enhanced authentication", func(t *testing.T) {
		t.Parallel()
		c := client5(t, addr, "ref5")
		// A client that connected without an Authentication Method must
		// not send AUTH [MQTT-4.12.0-7]: protocol error.
		c.Send(authPacket5(packet.ReAuthenticate, challengeMethod, []byte("alice")))
		expectDisconnect(t, c, packet.ProtocolError)
	})
}

func TestAuth5CredentialsExpire(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	t.Run("soon", func(t *testing.T) {
		t.Parallel()
		c := mqtttest.Dial(t, addr, packet.V5)
		start := time.Now()
		if ack := c.Connect(&packet.Connect{ClientID: "short", CleanStart: true, KeepAlive: 60, UsernameFlag: true, Username: "short"}); ack.ReasonCode != packet.Success {
			t.Fatalf("CONNACK %v", ack.ReasonCode)
		}
		// When the credentials expire the broker disconnects with 0x87.
		expectDisconnect(t, c, packet.NotAuthorized)
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("disconnected after %v, before the credentials expired", d)
		}
	})
}

func TestAuth5ReauthenticationExtendsExpiry(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{ttl: time.Second}})
	start := time.Now()
	c := challengeConnect(t, addr, "ttl", "alice")
	time.Sleep(500 * time.Millisecond) // half-way through the credentials' life
	c.Send(authPacket5(packet.ReAuthenticate, challengeMethod, []byte("alice")))
	nonce := expectAuth(t, c, packet.ContinueAuthentication)
	c.Send(authPacket5(packet.ContinueAuthentication, challengeMethod, reversed(nonce)))
	expectAuth(t, c, packet.Success)
	// The new credentials replace the old deadline: still connected after
	// the first one passed, disconnected (0x87) after the second.
	expectNothing(t, c, time.Until(start.Add(1300*time.Millisecond)), "credentials renewed by re-authentication")
	expectDisconnect(t, c, packet.NotAuthorized)
}

func TestAuth5AnotherMethodDuringConnect(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	c := startChallenge(t, addr, "switch", challengeMethod, []byte("alice"))
	nonce := expectAuth(t, c, packet.ContinueAuthentication)
	c.Send(authPacket5(packet.ContinueAuthentication, "other-method", reversed(nonce)))
	// AUTH must carry the CONNECT's method [MQTT-4.12.0-5]; another one is
	// a protocol error. Before CONNACK the broker may not send DISCONNECT
	// [MQTT-3.14.0-1]: it refuses with CONNACK 0x82 and closes (5.0
	// section 4.13.1) [MQTT-3.2.2-7].
	expectConnackRefused(t, c, packet.ProtocolError)
}

func TestAuth5CredentialsAlreadyExpired(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: challengeAuth{}})
	for i := range 20 {
		c := mqtttest.Dial(t, addr, packet.V5)
		c.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: fmt.Sprint("expired-", i), CleanStart: true,
			KeepAlive: 60, UsernameFlag: true, Username: "expired"})
		// Credentials that expired before CONNECT completed: refused with
		// CONNACK 0x87, or accepted and at once disconnected with
		// DISCONNECT 0x87; never closed without a reason.
		got := c.ExpectClosed()
		if len(got) == 1 {
			if ack, ok := got[0].(*packet.Connack); ok && ack.ReasonCode == packet.NotAuthorized {
				continue
			}
		}
		if len(got) == 2 {
			ack, ok1 := got[0].(*packet.Connack)
			d, ok2 := got[1].(*packet.Disconnect)
			if ok1 && ok2 && ack.ReasonCode == packet.Success && d.ReasonCode == packet.NotAuthorized {
				continue
			}
		}
		var desc []string
		for _, p := range got {
			desc = append(desc, fmt.Sprintf("%s %+v", p.Type(), p))
		}
		t.Fatalf("attempt %d: got %v before close, want CONNACK 0x87, or CONNACK 0x00 then DISCONNECT 0x87", i, desc)
	}
}
