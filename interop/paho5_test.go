package interop_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// paho5Connect connects a Paho 5.0 client as id and disconnects it when the
// test ends. Received messages go to the returned channel.
func paho5Connect(ctx context.Context, t *testing.T, addr, id string) (*paho.Client, chan received) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ch := make(chan received, 1024)
	c := paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				ch <- received{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS, Retain: p.Retain}
				return true, nil
			},
		},
		PacketTimeout: wait,
	})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		_ = nc.Close() // the test fails anyway
		t.Fatalf("connect %s: %v (CONNACK %+v)", id, err, ack)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02x, want success", ack.ReasonCode)
	}
	t.Cleanup(func() {
		// Disconnect closes the connection and waits for the client's
		// goroutines, also when the connection is already gone.
		if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
			t.Logf("disconnect %s: %v", id, err)
		}
	})
	return c, ch
}

func TestPaho5RoundTrip(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	sub, ch := paho5Connect(ctx, t, addr, "v5-sub")
	sa, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "v5/q0", QoS: 0},
		{Topic: "v5/q1", QoS: 1},
		{Topic: "v5/+/q2", QoS: 2},
	}})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if got := fmt.Sprint(sa.Reasons); got != "[0 1 2]" {
		t.Fatalf("SUBACK reason codes %s, want granted QoS [0 1 2]", got)
	}

	pub, _ := paho5Connect(ctx, t, addr, "v5-pub")
	want := []received{
		{Topic: "v5/q0", Payload: "zero", QoS: 0},
		{Topic: "v5/q1", Payload: "one", QoS: 1},
		{Topic: "v5/x/q2", Payload: "two", QoS: 2},
	}
	for _, m := range want {
		resp, err := pub.Publish(ctx, &paho.Publish{Topic: m.Topic, QoS: m.QoS, Payload: []byte(m.Payload)})
		if err != nil {
			t.Fatalf("publish QoS %d: %v", m.QoS, err)
		}
		// QoS 1 returns on PUBACK, QoS 2 on PUBCOMP; both must be success.
		if m.QoS > 0 && (resp == nil || resp.ReasonCode != 0) {
			t.Fatalf("publish QoS %d: acknowledgement %+v, want reason 0", m.QoS, resp)
		}
	}
	got := expectMessages(t, ch, len(want))
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d is %+v, want %+v", i, got[i], want[i])
		}
	}
	expectNoMessage(t, ch, 100*time.Millisecond)
}
