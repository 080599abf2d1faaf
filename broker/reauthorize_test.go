package broker_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// flipAuthorizer refuses secret/... while narrow is set, and allows
// everything else; a test flips it while clients work.
type flipAuthorizer struct {
	broker.AllowAll
	narrow atomic.Bool
}

func (a *flipAuthorizer) CanSubscribe(_ *broker.Identity, filter string, qos byte) broker.SubscribeDecision {
	if a.narrow.Load() && strings.HasPrefix(filter, "secret/") {
		return broker.SubscribeDecision{}
	}
	return broker.SubscribeDecision{OK: true, MaxQoS: qos}
}

func (a *flipAuthorizer) CanReceive(_ *broker.Identity, topic string) bool {
	return !a.narrow.Load() || !strings.HasPrefix(topic, "secret/")
}

// TestReauthorizeWhileClientsChurn runs Reauthorize over and over while
// clients connect, subscribe, unsubscribe and disconnect (clean and
// persistent sessions, taking each other's ids over) and the policy flips
// (with -race, a check of the locking). Then each id's persistent session
// subscribes to secret/# and the policy narrows: Reauthorize revokes each
// one, the subscription index holds exactly the sessions' subscriptions
// (nothing re-added to a dropped session, nothing lost), and a publish to
// secret/x matches nobody (5.0 PUBACK 0x10).
func TestReauthorizeWhileClientsChurn(t *testing.T) {
	authz := &flipAuthorizer{}
	b, addr := mqtttest.StartBroker(t, broker.Options{Authorizer: authz})
	const workers, rounds = 4, 15
	t.Run("churn", func(t *testing.T) {
		for w := range workers {
			t.Run(fmt.Sprint("client-", w), func(t *testing.T) {
				t.Parallel()
				for r := range rounds {
					id := fmt.Sprintf("churn-%d", (w+r)%workers) // ids move between workers
					// Another worker may take the id over at any point: a
					// closed connection ends the round.
					c := mqtttest.Dial(t, addr, packet.V311)
					if exchange(c, &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: r%2 == 0}) &&
						exchange(c, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
							{Filter: "secret/#", QoS: 1}, {Filter: "open/#", QoS: 1}}}) && r%3 == 0 {
						exchange(c, &packet.Unsubscribe{PacketID: 2, Filters: []string{"open/#"}})
					}
					exchange(c, &packet.Disconnect{})
					_ = c.Conn.Close() // the broker may have closed it first
				}
			})
		}
		t.Run("reload", func(t *testing.T) {
			t.Parallel()
			for i := range 4 * workers * rounds {
				authz.narrow.Store(i%2 == 0)
				b.Reauthorize()
			}
		})
	})

	// Every id ends with a persistent session subscribed to secret/#
	// under the wide policy; the narrow one then revokes each.
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().Clients == 0 }, "every client gone")
	authz.narrow.Store(false)
	for w := range workers {
		id := fmt.Sprintf("churn-%d", w)
		c, _ := mqtttest.Connect(t, addr, packet.V311, id, false)
		if codes := c.Subscribe(1, packet.Subscription{Filter: "secret/#", QoS: 1}); codes[0] != 1 {
			t.Fatalf("%s: SUBACK %v", id, codes)
		}
		c.Send(&packet.Disconnect{})
	}
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return b.Stats().Clients == 0 }, "every client gone")
	authz.narrow.Store(true)
	if n := b.Reauthorize(); n != workers {
		t.Fatalf("Reauthorize revoked %d subscriptions, want %d (secret/# of each session)", n, workers)
	}
	sum := 0
	for w := range workers {
		if cs, ok := b.ClientStats(fmt.Sprintf("churn-%d", w)); ok {
			sum += cs.Subscriptions
		}
	}
	if got := b.Stats().Subscriptions; got != sum {
		t.Fatalf("the subscription index holds %d entries, the sessions %d", got, sum)
	}
	pub, _ := mqtttest.Connect(t, addr, packet.V5, "pub", true)
	pub.Send(&packet.Publish{Topic: "secret/x", QoS: 1, PacketID: 1})
	if a, ok := pub.Expect().(*packet.Puback); !ok || a.ReasonCode != packet.NoMatchingSubscribers {
		t.Fatalf("publish to secret/x: %+v, want PUBACK 0x10 (no subscription left)", a)
	}
}

// exchange sends p and reads until its answer (CONNACK, SUBACK or
// UNSUBACK; none for DISCONNECT) arrives; false when the connection
// closes first, as a takeover does.
func exchange(c *mqtttest.Client, p packet.Packet) bool {
	buf, err := p.Append(nil, c.Version)
	if err != nil {
		panic(err) // the test's own packets encode
	}
	if _, err := c.Conn.Write(buf); err != nil {
		return false
	}
	if _, ok := p.(*packet.Disconnect); ok {
		return true
	}
	for {
		got, err := c.Read(mqtttest.Timeout)
		if err != nil {
			return false
		}
		switch a := got.(type) {
		case *packet.Connack:
			return a.ReasonCode == packet.Success
		case *packet.Suback, *packet.Unsuback:
			return true
		}
	}
}
