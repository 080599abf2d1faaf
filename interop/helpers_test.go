// Package interop_test drives an in-process Petrel broker with independent,
// real MQTT clients: the Eclipse Paho Go clients for 3.1/3.1.1 and 5.0, and
// Debian's mosquitto_pub/mosquitto_sub (DESIGN.md section 6, rule 9).
package interop_test

import (
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// wait bounds every wait for a message or an acknowledgement.
const wait = 5 * time.Second

// startBroker starts a broker with default options on 127.0.0.1:0; it is
// shut down when the test ends.
func startBroker(t *testing.T) (*broker.Broker, string) {
	t.Helper()
	return mqtttest.StartBroker(t, broker.Options{})
}

// waitSubscribed waits until the broker holds n subscriptions for clientID.
func waitSubscribed(t *testing.T, b *broker.Broker, clientID string, n int) {
	t.Helper()
	mqtttest.Eventually(t, wait, func() bool {
		st, ok := b.ClientStats(clientID)
		return ok && st.Online && st.Subscriptions >= n
	}, clientID+" subscribed")
}

// received is one application message as a client library reported it.
type received struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

// expectMessages reads n messages from ch, failing the test if they do not
// arrive within wait.
func expectMessages(t *testing.T, ch <-chan received, n int) []received {
	t.Helper()
	var got []received
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(got) < n {
		select {
		case m := <-ch:
			got = append(got, m)
		case <-timer.C:
			t.Fatalf("got %d of %d messages within %v: %+v", len(got), n, wait, got)
		}
	}
	return got
}

// expectNoMessage fails the test if a message arrives on ch within d.
func expectNoMessage(t *testing.T, ch <-chan received, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// eventually polls cond until it holds, failing after wait.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	mqtttest.Eventually(t, wait, cond, what)
}

// waitOffline waits until clientID's session is offline.
func waitOffline(t *testing.T, b *broker.Broker, clientID string) {
	t.Helper()
	eventually(t, func() bool {
		st, ok := b.ClientStats(clientID)
		return ok && !st.Online
	}, clientID+" offline")
}
