package broker_test

// Conformance: MQTT 5.0 sections 3.1.2.4 (Clean Start), 3.1.2.11.2 and
// 3.14.2.2.2 (Session Expiry Interval, at CONNECT and DISCONNECT), 4.1
// (session state) and 3.1.3.2.2 (Will Delay Interval), 3.14.2.1
// (DISCONNECT with Will Message).

import (
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// resume5 reconnects id with clean start 0 and the given expiry and checks
// session present.
func resume5(t *testing.T, addr, id string, expiry uint32, present bool) *mqtttest.Client {
	t.Helper()
	c, ack := session5(t, addr, id, false, expiry)
	if ack.SessionPresent != present {
		t.Fatalf("session present %v, want %v [MQTT-3.2.2-3]", ack.SessionPresent, present)
	}
	return c
}

func TestSession5ExpiryZeroEndsSessionWithConnection(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"disconnect", "network close"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			b, addr := mqtttest.StartBroker(t, broker.Options{})
			c, _ := session5(t, addr, "e0", false, 0)
			sub5(t, c, 1, "e0/#", 1, 0)
			if end == "disconnect" {
				disconnect5(t, b, c, "e0", packet.Success, nil)
			} else {
				dropConn5(t, b, c, "e0")
			}
			// Session Expiry Interval absent (0): the session ends when
			// the connection closes (5.0 section 3.1.2.11.2) [MQTT-3.1.2-23].
			waitGone(t, b, "e0", 5*time.Second)
			c = resume5(t, addr, "e0", 0, false)
			pub := client5(t, addr, "e0-pub")
			pub5(t, pub, "e0/x", 1, false, "x", 1)
			c.ExpectNone(quiet) // the subscription went with the session
		})
	}
}

func TestSession5ExpiryKeepsSessionForInterval(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := session5(t, addr, "e1", false, 1)
	sub5(t, c, 1, "e1/#", 1, 0)
	dropConn5(t, b, c, "e1")
	// Within the interval the session is kept [MQTT-3.1.2-23] and
	// messages for it are queued; resuming it gets them [MQTT-3.1.2-5].
	pub := client5(t, addr, "e1-pub")
	pub5(t, pub, "e1/x", 1, false, "kept", 1)
	c = resume5(t, addr, "e1", 1, true)
	p := expectPub(t, c, "e1/x", "kept")
	c.Send(&packet.Puback{PacketID: p.PacketID})

	// Gone once the interval has run out after the next disconnect.
	start := time.Now()
	disconnect5(t, b, c, "e1", packet.Success, nil)
	waitGone(t, b, "e1", 5*time.Second)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("session discarded after %v, before its 1s expiry interval", d)
	}
	c = resume5(t, addr, "e1", 1, false)
	pub5(t, pub, "e1/x", 1, false, "lost", 2)
	c.ExpectNone(quiet)
}

func TestSession5ExpiryMaxNeverExpires(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := session5(t, addr, "forever", false, 0xFFFFFFFF)
	sub5(t, c, 1, "ever/#", 1, 0)
	dropConn5(t, b, c, "forever")
	// 0xFFFFFFFF: the session does not expire (5.0 section 3.1.2.11.2).
	time.Sleep(1500 * time.Millisecond) // longer than any interval the other tests use
	if !hasSession(b, "forever") {
		t.Fatalf("session with expiry 0xFFFFFFFF discarded")
	}
	resume5(t, addr, "forever", 0xFFFFFFFF, true)
}

func TestSession5MaxSessionExpiryCaps(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{MaxSessionExpiry: time.Second})
	c, _ := session5(t, addr, "capped", false, 3600)
	dropConn5(t, b, c, "capped")
	// The broker's cap applies: the session ends after 1 s, not an hour.
	waitGone(t, b, "capped", 5*time.Second)
}

func TestSession5ExpiryChangedOnDisconnect(t *testing.T) {
	t.Parallel()
	t.Run("to zero", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		c, _ := session5(t, addr, "to0", false, 3600)
		sub5(t, c, 1, "to0/#", 1, 0)
		// DISCONNECT's Session Expiry Interval replaces CONNECT's
		// (5.0 section 3.14.2.2.2): 0 ends the session now.
		disconnect5(t, b, c, "to0", packet.Success, u32(0))
		waitGone(t, b, "to0", 5*time.Second)
		resume5(t, addr, "to0", 3600, false)
	})
	t.Run("to one second", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		c, _ := session5(t, addr, "to1", false, 0xFFFFFFFF)
		disconnect5(t, b, c, "to1", packet.Success, u32(1))
		if !hasSession(b, "to1") {
			t.Fatalf("session gone at once; want it kept for 1s")
		}
		waitGone(t, b, "to1", 5*time.Second)
	})
	t.Run("to longer", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		c, _ := session5(t, addr, "tolong", false, 1)
		disconnect5(t, b, c, "tolong", packet.Success, u32(3600))
		time.Sleep(1500 * time.Millisecond) // past CONNECT's 1s interval
		if !hasSession(b, "tolong") {
			t.Fatalf("session discarded after CONNECT's 1s interval; DISCONNECT set 3600")
		}
		resume5(t, addr, "tolong", 1, true)
	})
}

func TestSession5DisconnectCannotSetExpiryAfterZero(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := session5(t, addr, "zero", false, 0)
	c.Send(&packet.Disconnect{Properties: func() packet.Properties {
		var p packet.Properties
		p.SessionExpiryInterval = 60
		p.Set(packet.PropSessionExpiryInterval)
		return p
	}()})
	// A non-zero Session Expiry Interval on DISCONNECT after 0 on CONNECT
	// is a protocol error: the broker answers DISCONNECT 0x82 (5.0 section
	// 3.14.2.2.2).
	expectDisconnect(t, c, packet.ProtocolError)
}

func TestSession5CleanStartWithExistingSession(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	c, _ := session5(t, addr, "cs", false, 60)
	sub5(t, c, 1, "cs/#", 1, 0)
	dropConn5(t, b, c, "cs")
	pub := client5(t, addr, "cs-pub")
	pub5(t, pub, "cs/queued", 1, false, "old", 1)

	// Clean start 1 discards the existing session [MQTT-3.1.2-4]: session
	// present 0 [MQTT-3.2.2-2], no subscription, no queued message.
	c, ack := session5(t, addr, "cs", true, 60)
	if ack.SessionPresent {
		t.Fatalf("clean start 1: session present 1 [MQTT-3.2.2-2]")
	}
	c.ExpectNone(quiet)
	pub5(t, pub, "cs/new", 1, false, "new", 2)
	c.ExpectNone(quiet)

	// Clean start 0 resumes the session the clean start made [MQTT-3.1.2-5].
	sub5(t, c, 2, "cs/#", 1, 0)
	dropConn5(t, b, c, "cs")
	c = resume5(t, addr, "cs", 60, true)
	pub5(t, pub, "cs/again", 1, false, "again", 3)
	expectPub(t, c, "cs/again", "again")
}

func TestSession5WillDelay(t *testing.T) {
	t.Parallel()
	t.Run("sent after the delay", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		c := willConnect5(t, addr, "wd", false, 60, 1, "will/wd")
		start := time.Now()
		dropConn5(t, b, c, "wd")
		// The will waits out its Will Delay Interval (5.0 section 3.1.3.2.2).
		p := expectPub(t, w, "will/wd", "gone")
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("will sent after %v, before its 1s delay", d)
		}
		w.Send(&packet.Puback{PacketID: p.PacketID})
		w.ExpectNone(quiet)
	})
	t.Run("not sent when the session is resumed in time", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		c := willConnect5(t, addr, "wr", false, 60, 1, "will/wr")
		dropConn5(t, b, c, "wr")
		// Reconnecting to the session within the delay: no will [MQTT-3.1.3-9].
		resume5(t, addr, "wr", 60, true)
		w.ExpectNone(1500 * time.Millisecond)
	})
	t.Run("sent at session expiry when sooner", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		c := willConnect5(t, addr, "we", false, 1, 30, "will/we")
		start := time.Now()
		dropConn5(t, b, c, "we")
		// The will goes when the session ends if that comes before the
		// delay (5.0 section 3.1.3.2.2).
		w.ExpectNone(700 * time.Millisecond)
		expectPub(t, w, "will/we", "gone")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("will sent after %v; the session expired after 1s", d)
		}
	})
	t.Run("sent at once when the session ends with the connection", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		c := willConnect5(t, addr, "wz", true, 0, 30, "will/wz")
		dropConn5(t, b, c, "wz")
		p, err := w.Read(2 * time.Second)
		if err != nil {
			t.Fatalf("no will within 2s of a session with expiry 0 ending: %v", err)
		}
		if pub, ok := p.(*packet.Publish); !ok || pub.Topic != "will/wz" {
			t.Fatalf("got %s %+v, want the will", p.Type(), p)
		}
	})
	t.Run("sent at once when a clean start ends the session", func(t *testing.T) {
		t.Parallel()
		b, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		c := willConnect5(t, addr, "wc", false, 60, 30, "will/wc")
		dropConn5(t, b, c, "wc")
		// A new connection with clean start 1 ends the old session and,
		// with it, the will delay (5.0 sections 3.1.2.4, 3.1.3.2.2).
		session5(t, addr, "wc", true, 60)
		p, err := w.Read(2 * time.Second)
		if err != nil {
			t.Fatalf("no will within 2s of clean start ending the session: %v", err)
		}
		if pub, ok := p.(*packet.Publish); !ok || pub.Topic != "will/wc" {
			t.Fatalf("got %s %+v, want the will", p.Type(), p)
		}
	})
}

func TestSession5DisconnectWithWillMessage(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	w := client5(t, addr, "watch")
	sub5(t, w, 1, "will/#", 1, 0)

	// DISCONNECT 0x04: the will is published (5.0 section 3.14.2.1).
	c := willConnect5(t, addr, "w4", true, 0, 0, "will/w4")
	disconnect5(t, b, c, "w4", packet.DisconnectWithWill, nil)
	expectPub(t, w, "will/w4", "gone")

	// DISCONNECT 0x00: the will is discarded [MQTT-3.14.4-3] [MQTT-3.1.2-10].
	c = willConnect5(t, addr, "w0", true, 0, 0, "will/w0")
	disconnect5(t, b, c, "w0", packet.Success, nil)
	w.ExpectNone(3 * quiet)
}

func TestSession5WillOnTakeover(t *testing.T) {
	t.Parallel()
	t.Run("no delay: sent", func(t *testing.T) {
		t.Parallel()
		_, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		old := willConnect5(t, addr, "tw", false, 60, 0, "will/tw")
		session5(t, addr, "tw", false, 60)
		expectDisconnect(t, old, packet.SessionTakenOver)
		// The taken-over connection's will is published as for any other
		// close without DISCONNECT 0x00 (5.0 section 3.1.4, 3.1.2.5).
		expectPub(t, w, "will/tw", "gone")
	})
	t.Run("delay, session resumed: not sent", func(t *testing.T) {
		t.Parallel()
		_, addr := mqtttest.StartBroker(t, broker.Options{})
		w := client5(t, addr, "watch")
		sub5(t, w, 1, "will/#", 1, 0)
		old := willConnect5(t, addr, "td", false, 60, 1, "will/td")
		session5(t, addr, "td", false, 60)
		expectDisconnect(t, old, packet.SessionTakenOver)
		// The new connection resumed the session within the will delay
		// [MQTT-3.1.3-9].
		w.ExpectNone(1500 * time.Millisecond)
	})
}

func TestSession5WillProperties(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	w := client5(t, addr, "watch")
	sub5(t, w, 1, "will/#", 1, 0)
	will := &packet.Will{Topic: "will/props", Payload: []byte("bye"), QoS: 1}
	wp := &will.Properties
	wp.PayloadFormatIndicator = 1
	wp.Set(packet.PropPayloadFormatIndicator)
	wp.ContentType = "text/plain"
	wp.Set(packet.PropContentType)
	wp.ResponseTopic = "resp/here"
	wp.Set(packet.PropResponseTopic)
	wp.CorrelationData = []byte{0, 1, 2}
	wp.Set(packet.PropCorrelationData)
	wp.UserProperties = []packet.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}}
	c, _ := connect5(t, addr, &packet.Connect{ClientID: "wp", CleanStart: true, Will: will})
	dropConn5(t, b, c, "wp")
	p := expectPub(t, w, "will/props", "bye")
	// The will's properties go with it (5.0 section 3.1.3.2).
	got := &p.Properties
	if got.PayloadFormatIndicator != 1 || got.ContentType != "text/plain" || got.ResponseTopic != "resp/here" ||
		string(got.CorrelationData) != "\x00\x01\x02" || len(got.UserProperties) != 3 ||
		got.UserProperties[0] != wp.UserProperties[0] || got.UserProperties[1] != wp.UserProperties[1] || got.UserProperties[2] != wp.UserProperties[2] {
		t.Fatalf("will properties %+v, want %+v", *got, *wp)
	}
	if got.Has(packet.PropWillDelayInterval) {
		t.Fatalf("will delivered with a Will Delay Interval")
	}
}

func TestSession5WillDelayShortenedByDisconnectExpiry(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	w := client5(t, addr, "watch")
	sub5(t, w, 1, "will/#", 1, 0)
	c := willConnect5(t, addr, "wx", false, 3600, 30, "will/wx")
	start := time.Now()
	// DISCONNECT 0x04 asks for the will; its Session Expiry Interval of 1s
	// ends the session before the 30s will delay: the will goes then
	// (5.0 sections 3.1.3.2.2, 3.14.2.2.2).
	disconnect5(t, b, c, "wx", packet.DisconnectWithWill, u32(1))
	expectPub(t, w, "will/wx", "gone")
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("will sent after %v, before the session's 1s expiry", d)
	}
}

func TestSession5TakeoverWithCleanStartSendsDelayedWill(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	w := client5(t, addr, "watch")
	sub5(t, w, 1, "will/#", 1, 0)
	old := willConnect5(t, addr, "tc", false, 60, 30, "will/tc")
	_, ack := session5(t, addr, "tc", true, 60)
	expectDisconnect(t, old, packet.SessionTakenOver)
	if ack.SessionPresent {
		t.Fatalf("clean start takeover: session present 1 [MQTT-3.2.2-2]")
	}
	// The clean start ended the old session, and with it the will delay:
	// the will goes now (5.0 sections 3.1.2.4, 3.1.3.2.2).
	p, err := w.Read(2 * time.Second)
	if err != nil {
		t.Fatalf("no will within 2s of a clean start ending the session: %v", err)
	}
	if pub, ok := p.(*packet.Publish); !ok || pub.Topic != "will/tc" {
		t.Fatalf("got %s %+v, want the will", p.Type(), p)
	}
}

func TestSession5MaxSessionExpiryAnnouncedInConnack(t *testing.T) {
	t.Parallel()
	_, addr := mqtttest.StartBroker(t, broker.Options{MaxSessionExpiry: time.Second})
	_, ack := session5(t, addr, "capped", false, 3600)
	// The server uses CONNACK's Session Expiry Interval to tell the client
	// it uses another value than the one sent (5.0 section 3.2.2.3.2).
	if !ack.Properties.Has(packet.PropSessionExpiryInterval) || ack.Properties.SessionExpiryInterval != 1 {
		t.Fatalf("CONNACK Session Expiry Interval %v %d, want 1 (the broker's cap)",
			ack.Properties.Has(packet.PropSessionExpiryInterval), ack.Properties.SessionExpiryInterval)
	}
	// Below the cap nothing is announced.
	_, ack = session5(t, addr, "below", false, 1)
	if ack.Properties.Has(packet.PropSessionExpiryInterval) && ack.Properties.SessionExpiryInterval != 1 {
		t.Fatalf("CONNACK Session Expiry Interval %d for a client within the cap", ack.Properties.SessionExpiryInterval)
	}
}
