package interop_test

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// Takeover races: tenant A and the attacker connect with the same client
// id at once, round after round. Within a tenant the newer connection
// takes the older over [MQTT-3.1.4-2]; across tenants nothing does, the
// attacker never gets A's session or its queued messages, and A's
// takeover damping is A's own. Share groups: $share groups are per tenant
// (DESIGN.md section 3), also when a member leaves and its messages go to
// the others.

// raceRounds is the number of concurrent connects of the race; the
// flapping attacker connects flapRounds times (past the damping limit of
// 5 takeovers in 10 s, each further one costing it a second).
const (
	raceRounds = 50
	flapRounds = 8
)

func raceScenarios() []scenario {
	return []scenario{
		{name: "race/same-id-concurrent", run: raceSameID},
		{name: "race/attacker-flapping", run: raceFlapping},
	}
}

// rawConnect is a CONNECT sent and answered without the test's t, for
// goroutines: it returns the CONNACK and what came before the PINGRESP
// that follows it.
func (w *world) rawConnect(c *mqtttest.Client, who, id string, s sess) (*packet.Connack, []packet.Packet, error) {
	p := principals[who]
	con := &packet.Connect{ProtocolName: "MQTT", Version: c.Version, ClientID: id, CleanStart: s.clean, KeepAlive: 60,
		PasswordFlag: true}
	if c.Version != packet.V5 {
		con.CleanStart = s.clean && s.expiry == 0
	} else if s.expiry > 0 {
		con.Properties.SessionExpiryInterval = s.expiry
		con.Properties.Set(packet.PropSessionExpiryInterval)
	}
	if p.user != "" {
		con.Username, con.UsernameFlag, con.Password = p.user, true, []byte("pw-"+p.user)
	} else {
		con.Password, con.UsernameFlag = w.token(p), c.Version != packet.V5
	}
	buf, err := con.Append(nil, c.Version)
	if err != nil {
		return nil, nil, err
	}
	if buf, err = (&packet.Pingreq{}).Append(buf, c.Version); err != nil {
		return nil, nil, err
	}
	if _, err := c.Conn.Write(buf); err != nil {
		return nil, nil, err
	}
	pk, err := c.Read(mqtttest.Timeout)
	if err != nil {
		return nil, nil, err
	}
	ack, ok := pk.(*packet.Connack)
	if !ok {
		return nil, nil, fmt.Errorf("got %s, want CONNACK", pk.Type())
	}
	var before []packet.Packet
	for ack.ReasonCode == packet.Success {
		pk, err := c.Read(mqtttest.Timeout)
		if err != nil {
			return ack, before, nil // taken over: closed
		}
		if _, ok := pk.(*packet.Pingresp); ok {
			break
		}
		before = append(before, pk)
	}
	return ack, before, nil
}

// raceSameID: A's session (persistent, subscribed, three messages queued)
// and the attacker's clean connections race for one client id, 50 rounds.
func raceSameID(t *testing.T, w *world, atk string) {
	const id = "meter-9"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#")
	a.bye("A")
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	for i := range 3 {
		gwA.pub("A/read/m1/gas", fmt.Sprintf("secret:%d", i), 1, false)
	}
	crossed := 0
	for round := range raceRounds {
		ca, cb := mqtttest.Dial(t, w.addr, w.v), mqtttest.Dial(t, w.addr, w.v)
		var wg sync.WaitGroup
		var ackA, ackB *packet.Connack
		var gotB []packet.Packet
		var errA, errB error
		wg.Go(func() { ackA, _, errA = w.rawConnect(ca, "A", id, persistSess) })
		wg.Go(func() { ackB, gotB, errB = w.rawConnect(cb, atk, id, cleanSess) })
		wg.Wait()
		if errA != nil || errB != nil {
			t.Fatalf("round %d: A: %v, %s: %v", round, errA, atk, errB)
		}
		if ackA.ReasonCode != packet.Success || ackB.ReasonCode != packet.Success {
			t.Fatalf("round %d: CONNACK A %v, %s %v", round, ackA.ReasonCode, atk, ackB.ReasonCode)
		}
		if ackB.SessionPresent {
			t.Errorf("CROSSING: round %d: %s got session present 1", round, atk)
		}
		for _, pk := range gotB {
			if pub, ok := pk.(*packet.Publish); ok {
				crossed++
				t.Errorf("CROSSING: round %d: %s got %s %q", round, atk, pub.Topic, pub.Payload)
			}
		}
		_ = ca.Conn.Close() // abrupt: A's session stays for the next round
		_ = cb.Conn.Close()
	}
	// A resumes: its session and every queued message are there, and
	// the attacker, connected, gets none of A's live traffic.
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool {
		st, ok := w.b.ClientStatsIn("A", id)
		return ok && !st.Online
	}, "A's session offline")
	a, ack := w.connect("A", id, persistSess)
	if !ack.SessionPresent {
		t.Fatalf("CROSSING: A's session is gone after the race")
	}
	b, _ := w.connect(atk, id, cleanSess)
	b.mustSub("B/read/#")
	gwA.pub("A/read/m1/gas", "secret:live", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:0", "secret:1", "secret:2", "secret:live")
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	gwB.pub("B/read/ctl", "ctl:b", 1, false)
	noCrossing(t, atk, b.until("ctl:b"), "secret:")
	a.alive()
}

// raceFlapping: the attacker connects and drops its client id (A's id)
// flapRounds times in a row, which damps its own takeovers; A connects meanwhile
// and after, and is never refused, damped or kicked.
func raceFlapping(t *testing.T, w *world, atk string) {
	const id = "meter-9"
	a, _ := w.connect("A", id, freshPersist)
	a.mustSub("A/read/#")
	done := make(chan struct{})
	var flapErr error
	go func() {
		defer close(done)
		for range flapRounds {
			c, err := dialRaw(w.addr, w.v)
			if err != nil {
				flapErr = err
				return
			}
			_, _, err = w.rawConnect(c, atk, id, persistSess)
			_ = c.Conn.Close()
			if err != nil {
				flapErr = err
				return
			}
		}
	}()
	a2, _ := w.connect("A", "meter-10", freshPersist) // a new A connection while the attacker flaps
	a2.mustSub("A/read/#")
	<-done
	if flapErr != nil {
		t.Fatalf("%s flapping: %v", atk, flapErr)
	}
	a.alive()
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	gwA.pub("A/read/m1/gas", "secret:1", 1, false)
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), "secret:1")
	hasPayloads(t, "A (second)", a2.until("ctl:a"), "secret:1")
	// A's own takeover is immediate: the old connection gets 0x8E (5.0)
	// and the new one its session.
	a3, ack := w.connect("A", id, persistSess)
	if !ack.SessionPresent {
		t.Errorf("CROSSING: A's session lost while %s flapped its client id", atk)
	}
	closed := a.ExpectClosed()
	if w.v == packet.V5 && (len(closed) == 0 || closed[len(closed)-1].(*packet.Disconnect).ReasonCode != packet.SessionTakenOver) {
		t.Errorf("A's first connection got %+v, want DISCONNECT 0x8E", closed)
	}
	a3.alive()
}

// dialRaw dials without the test's t (for goroutines); the caller closes.
func dialRaw(addr string, v packet.Version) (*mqtttest.Client, error) {
	nc, err := net.DialTimeout("tcp", addr, mqtttest.Timeout)
	if err != nil {
		return nil, err
	}
	return &mqtttest.Client{Conn: nc, Version: v}, nil
}
