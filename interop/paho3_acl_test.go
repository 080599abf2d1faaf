package interop_test

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// The Eclipse Paho interoperability suite (paho.mqtt.testing,
// interoperability/client_test.py) run with the Paho Go 3.1.1 client
// against a broker whose ACL allows everything but test/nosubscribe, the
// ACL that suite expects. Its topics and wildcard filters:
var (
	pahoTopics = []string{"TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA"}
	pahoWild   = []string{"TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#"}
)

// pahoACL starts a broker with the suite's ACL: one role reading and
// writing "#" (and the "$TopicA" tree the $-topic case publishes to),
// denying test/nosubscribe.
func pahoACL(t *testing.T) (*broker.Broker, string) {
	t.Helper()
	role := auth.Role{Name: "INTEROP", Activity: auth.ActivityBoth, MaxQoS: 2, Retain: true,
		Topics: []string{"#", "$TopicA/#"}, Deny: []string{"test/nosubscribe"}}
	f := newAuthzFixture(t, map[string][]string{"paho": {"INTEROP"}}, role)
	return mqtttest.StartBroker(t, f.options(broker.Options{}))
}

// pahoUser connects a Paho 3.1.1 client as the suite's user.
func pahoUser(t *testing.T, addr, id string, configure func(*mqtt.ClientOptions)) (mqtt.Client, bool) {
	t.Helper()
	return pahoConnect(t, addr, id, func(o *mqtt.ClientOptions) {
		o.SetUsername("paho").SetPassword("pw-paho")
		if configure != nil {
			configure(o)
		}
	})
}

// pahoDefault makes the client's default handler feed ch: subscribing with
// a nil handler, Paho calls it once per message even when several of the
// client's filters match.
func pahoDefault(h mqtt.MessageHandler) func(*mqtt.ClientOptions) {
	return func(o *mqtt.ClientOptions) { o.SetDefaultPublishHandler(h) }
}

func TestPahoInteropSuiteWithACL(t *testing.T) {
	t.Run("basic", func(t *testing.T) {
		_, addr := pahoACL(t)
		ch, h := pahoSink()
		c, _ := pahoUser(t, addr, "myclientid", nil)
		pahoSubscribe(t, c, map[string]byte{pahoTopics[0]: 2}, h)
		for qos := range byte(3) {
			waitToken(t, c.Publish(pahoTopics[0], qos, false, fmt.Sprintf("qos %d", qos)), "publish")
		}
		got := expectMessages(t, ch, 3)
		for qos, m := range got {
			if want := (received{Topic: pahoTopics[0], Payload: fmt.Sprintf("qos %d", qos), QoS: byte(qos)}); m != want {
				t.Fatalf("message %d is %+v, want %+v", qos, m, want)
			}
		}
	})

	t.Run("retained messages", func(t *testing.T) {
		_, addr := pahoACL(t)
		c, _ := pahoUser(t, addr, "myclientid", nil)
		for i, topic := range pahoTopics[1:4] {
			waitToken(t, c.Publish(topic, byte(i), true, fmt.Sprintf("qos %d", i)), "publish retained")
		}
		ch, h := pahoSink()
		// "+/+" overlaps the denied test/nosubscribe: granted all the same.
		pahoSubscribe(t, c, map[string]byte{pahoWild[5]: 2}, h)
		got := topics(expectMessages(t, ch, 3))
		slices.Sort(got)
		if want := []string{"Topic/C", "TopicA/B", "TopicA/C"}; !slices.Equal(got, want) {
			t.Fatalf("retained %q, want %q", got, want)
		}
		for _, topic := range pahoTopics[1:4] { // clear them [MQTT-3.3.1-10]
			waitToken(t, c.Publish(topic, 1, true, ""), "clear retained")
		}
		expectMessages(t, ch, 3)
		ch2, h2 := pahoSink()
		late, _ := pahoUser(t, addr, "late", nil)
		pahoSubscribe(t, late, map[string]byte{pahoWild[5]: 2}, h2)
		expectNoMessage(t, ch2, 200*time.Millisecond)
	})

	t.Run("offline message queueing", func(t *testing.T) {
		b, addr := pahoACL(t)
		persistent := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }
		bc, _ := pahoUser(t, addr, "myclientid2", persistent)
		_, h := pahoSink()
		pahoSubscribe(t, bc, map[string]byte{pahoWild[5]: 2}, h)
		bc.Disconnect(250)
		waitOfflineIn(t, b, "A", "myclientid2")
		a, _ := pahoUser(t, addr, "myclientid", nil)
		for qos := range byte(3) {
			waitToken(t, a.Publish(pahoTopics[1], qos, false, fmt.Sprintf("qos %d", qos)), "publish")
		}
		ch, h2 := pahoSink()
		pahoUser(t, addr, "myclientid2", func(o *mqtt.ClientOptions) { persistent(o); pahoDefault(h2)(o) })
		// QoS 0 is not queued for an offline session by default; the suite
		// accepts 2 or 3.
		got := expectMessages(t, ch, 2)
		if got[0].QoS != 1 || got[1].QoS != 2 {
			t.Fatalf("queued %+v, want the QoS 1 and QoS 2 messages", got)
		}
		expectNoMessage(t, ch, 200*time.Millisecond)
	})

	t.Run("overlapping subscriptions", func(t *testing.T) {
		_, addr := pahoACL(t)
		ch, h := pahoSink()
		c, _ := pahoUser(t, addr, "myclientid", pahoDefault(h))
		tok := c.SubscribeMultiple(map[string]byte{pahoWild[6]: 2, pahoWild[0]: 1}, nil)
		waitToken(t, tok, "subscribe")
		waitToken(t, c.Publish(pahoTopics[3], 2, false, "overlapping topic filters"), "publish")
		// One message at the highest granted QoS [MQTT-3.3.5-1] (the suite
		// also accepts one per subscription).
		if got := expectMessages(t, ch, 1)[0]; got.Topic != pahoTopics[3] || got.QoS != 2 {
			t.Fatalf("got %+v, want %s at QoS 2", got, pahoTopics[3])
		}
		expectNoMessage(t, ch, 200*time.Millisecond)
	})

	t.Run("keepalive", func(t *testing.T) {
		_, addr := pahoACL(t)
		ch, h := pahoSink()
		obs, _ := pahoUser(t, addr, "observer", nil)
		pahoSubscribe(t, obs, map[string]byte{pahoTopics[4]: 2}, h)
		// A client that goes silent past 1.5 x its keepalive is closed
		// [MQTT-3.1.2-24] and its will published.
		silent := mqtttest.Dial(t, addr, packet.V311)
		ack := silent.Connect(&packet.Connect{ClientID: "myclientid", CleanStart: true, KeepAlive: 1,
			Username: "paho", UsernameFlag: true, Password: []byte("pw-paho"), PasswordFlag: true,
			Will: &packet.Will{Topic: pahoTopics[4], Payload: []byte("keepalive expiry"), QoS: 2}})
		if ack.ReasonCode != packet.Success {
			t.Fatalf("CONNACK %v", ack.ReasonCode)
		}
		if got := expectMessages(t, ch, 1)[0]; got.Topic != pahoTopics[4] || got.Payload != "keepalive expiry" {
			t.Fatalf("got %+v, want the will", got)
		}
		silent.ExpectClosed()
	})

	t.Run("redelivery on reconnect", func(t *testing.T) {
		b, addr := pahoACL(t)
		var mu sync.Mutex
		var raw *breakableConn
		ch, h := pahoSink()
		persistent := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }
		bc, _ := pahoUser(t, addr, "myclientid2", func(o *mqtt.ClientOptions) {
			persistent(o)
			o.SetAutoAckDisabled(true) // the suite's pause(): nothing is acknowledged
			o.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
				nc, err := net.DialTimeout("tcp", u.Host, wait)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				defer mu.Unlock()
				raw = &breakableConn{Conn: nc}
				return raw, nil
			})
			o.SetConnectionLostHandler(func(mqtt.Client, error) {})
		})
		pahoSubscribe(t, bc, map[string]byte{pahoWild[6]: 2}, h)
		bc.Publish(pahoTopics[1], 1, false, "")
		bc.Publish(pahoTopics[3], 2, false, "")
		expectMessages(t, ch, 2) // received, never acknowledged
		eventually(t, func() bool {
			st, ok := b.ClientStatsIn("A", "myclientid2")
			return ok && st.Inflight == 2
		}, "two messages awaiting acknowledgement")
		mu.Lock()
		bc2 := raw
		mu.Unlock()
		if err := bc2.Break(); err != nil {
			t.Fatal(err)
		}
		waitOfflineIn(t, b, "A", "myclientid2")
		ch2, h2 := pahoSink()
		pahoUser(t, addr, "myclientid2", func(o *mqtt.ClientOptions) { persistent(o); pahoDefault(h2)(o) })
		got := topics(expectMessages(t, ch2, 2)) // sent again [MQTT-4.4.0-1]
		if want := []string{pahoTopics[1], pahoTopics[3]}; !slices.Equal(got, want) {
			t.Fatalf("redelivered %q, want %q", got, want)
		}
	})

	t.Run("zero length clientid", func(t *testing.T) {
		_, addr := pahoACL(t)
		pahoUser(t, addr, "", nil) // clean session: an id is assigned [MQTT-3.1.3-6]
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("").
			SetUsername("paho").SetPassword("pw-paho").SetProtocolVersion(4).SetCleanSession(false).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wait))
		tok := c.Connect()
		if !tok.WaitTimeout(wait) {
			t.Fatal("no answer to CONNECT")
		}
		// An empty id needs clean session: identifier rejected [MQTT-3.1.3-8].
		if tok.Error() == nil || tok.(*mqtt.ConnectToken).ReturnCode() != packet.ConnackReturnCode(packet.ClientIdentifierNotValid) {
			t.Fatalf("CONNECT with empty id, clean session 0: %v (return code %d), want identifier rejected",
				tok.Error(), tok.(*mqtt.ConnectToken).ReturnCode())
		}
	})

	t.Run("subscribe failure", func(t *testing.T) {
		_, addr := pahoACL(t)
		c, _ := pahoUser(t, addr, "myclientid", nil)
		tok := c.Subscribe("test/nosubscribe", 2, nil)
		waitToken(t, tok, "subscribe")
		// The denied topic itself is refused: 0x80 [MQTT-3.9.3-2].
		if got := tok.(*mqtt.SubscribeToken).Result()["test/nosubscribe"]; got != 0x80 {
			t.Fatalf("SUBACK for test/nosubscribe: 0x%02X, want 0x80", got)
		}
	})

	t.Run("dollar topics", func(t *testing.T) {
		_, addr := pahoACL(t)
		ch, h := pahoSink()
		c, _ := pahoUser(t, addr, "myclientid", nil)
		pahoSubscribe(t, c, map[string]byte{pahoWild[5]: 2, pahoWild[2]: 2}, h)
		chD, hD := pahoSink()
		d, _ := pahoUser(t, addr, "dollar", nil)
		pahoSubscribe(t, d, map[string]byte{"$TopicA/+": 1}, hD)
		waitToken(t, c.Publish("$"+pahoTopics[1], 1, false, ""), "publish")
		// Routed (a filter naming $TopicA receives it), but "+/+" and "#"
		// never match a topic starting with '$' [MQTT-4.7.2-1].
		if got := expectMessages(t, chD, 1)[0]; got.Topic != "$"+pahoTopics[1] {
			t.Fatalf("$TopicA/+ got %+v", got)
		}
		expectNoMessage(t, ch, 200*time.Millisecond)
	})

	t.Run("unsubscribe", func(t *testing.T) {
		_, addr := pahoACL(t)
		ch, h := pahoSink()
		bc, _ := pahoUser(t, addr, "myclientid2", nil)
		for _, topic := range pahoTopics[:3] {
			pahoSubscribe(t, bc, map[string]byte{topic: 2}, h)
		}
		waitToken(t, bc.Unsubscribe(pahoTopics[0]), "unsubscribe")
		a, _ := pahoUser(t, addr, "myclientid", nil)
		for i, topic := range pahoTopics[:3] {
			waitToken(t, a.Publish(topic, 1, false, fmt.Sprintf("topic %d", i)), "publish")
		}
		got := topics(expectMessages(t, ch, 2))
		if want := pahoTopics[1:3]; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		expectNoMessage(t, ch, 200*time.Millisecond)
	})
}
