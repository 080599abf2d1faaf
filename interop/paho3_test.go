package interop_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// pahoSink returns a channel of received messages and the Paho handler
// that feeds it.
func pahoSink() (chan received, mqtt.MessageHandler) {
	ch := make(chan received, 1024)
	return ch, func(_ mqtt.Client, m mqtt.Message) {
		ch <- received{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retain: m.Retained()}
	}
}

// pahoConnect connects a Paho 3.1.1 client (configure may change its
// options first) and disconnects it when the test ends. It returns the
// client and whether the broker reported a session present.
func pahoConnect(t *testing.T, addr, id string, configure func(*mqtt.ClientOptions)) (mqtt.Client, bool) {
	t.Helper()
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(wait).
		SetWriteTimeout(wait).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	if configure != nil {
		configure(opts)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	waitToken(t, tok, "connect "+id)
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(250)
		}
	})
	return c, tok.(*mqtt.ConnectToken).SessionPresent()
}

// waitToken fails the test unless tok completes without error within wait.
func waitToken(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(wait) {
		t.Fatalf("%s: no answer within %v", what, wait)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pahoSubscribe subscribes c to filters (filter -> QoS) with handler and
// checks the granted QoS of each.
func pahoSubscribe(t *testing.T, c mqtt.Client, filters map[string]byte, handler mqtt.MessageHandler) {
	t.Helper()
	tok := c.SubscribeMultiple(filters, handler)
	waitToken(t, tok, "subscribe")
	granted := tok.(*mqtt.SubscribeToken).Result()
	for f, q := range filters {
		if granted[f] != q {
			t.Fatalf("SUBACK for %q granted %d, want %d (all: %v)", f, granted[f], q, granted)
		}
	}
}

// breakableConn is a client connection that the test can break under the
// client library. Paho takes "use of closed network connection" for a close
// of its own and would neither report the loss nor stop, so after Break the
// connection reports errBroken instead.
type breakableConn struct {
	net.Conn
	broken atomic.Bool
}

var errBroken = errors.New("interop: connection broken by the test")

// Break closes the TCP connection at once.
func (c *breakableConn) Break() error {
	c.broken.Store(true)
	return c.Conn.Close()
}

func (c *breakableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.broken.Load() {
		err = errBroken
	}
	return n, err
}

func (c *breakableConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && c.broken.Load() {
		err = errBroken
	}
	return n, err
}

func topics(ms []received) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Topic
	}
	return out
}

func TestPaho311Wildcards(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	chA, hA := pahoSink()
	a, _ := pahoConnect(t, addr, "wild-a", nil)
	// Filters of one client do not overlap: Paho calls a handler once per
	// matching filter, so overlapping ones would show duplicates that the
	// broker did not send.
	pahoSubscribe(t, a, map[string]byte{"sensors/+/temp": 1, "alerts/#": 1}, hA)
	chB, hB := pahoSink()
	b, _ := pahoConnect(t, addr, "wild-b", nil)
	pahoSubscribe(t, b, map[string]byte{"#": 1}, hB)

	pub, _ := pahoConnect(t, addr, "wild-pub", nil)
	for _, topic := range []string{
		"sensors/a/temp", "sensors/a/hum", "sensors/a/b/temp", "alerts",
		"alerts/x/y", "$ctl/x", "alerts/end",
	} {
		waitToken(t, pub.Publish(topic, 1, false, "p:"+topic), "publish "+topic)
	}

	wantA := []string{"sensors/a/temp", "alerts", "alerts/x/y", "alerts/end"}
	if got := topics(expectMessages(t, chA, len(wantA))); !slices.Equal(got, wantA) {
		t.Errorf("client with sensors/+/temp and alerts/# got %q, want %q", got, wantA)
	}
	// '#' matches everything but topics starting with '$' [MQTT-4.7.2-1].
	wantB := []string{"sensors/a/temp", "sensors/a/hum", "sensors/a/b/temp", "alerts", "alerts/x/y", "alerts/end"}
	if got := topics(expectMessages(t, chB, len(wantB))); !slices.Equal(got, wantB) {
		t.Errorf("client with # got %q, want %q", got, wantB)
	}
	expectNoMessage(t, chA, 100*time.Millisecond)
	expectNoMessage(t, chB, 100*time.Millisecond)
}

func TestPaho311QoSInOrder(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	const n = 50
	for qos := range byte(3) {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			t.Parallel()
			topic := fmt.Sprintf("order/q%d", qos)
			ch, h := pahoSink()
			sub, _ := pahoConnect(t, addr, fmt.Sprintf("order-sub-%d", qos), nil)
			pahoSubscribe(t, sub, map[string]byte{topic: qos}, h)
			pub, _ := pahoConnect(t, addr, fmt.Sprintf("order-pub-%d", qos), nil)
			toks := make([]mqtt.Token, n)
			for i := range n {
				toks[i] = pub.Publish(topic, qos, false, fmt.Sprintf("m%03d", i))
			}
			for i, tok := range toks {
				waitToken(t, tok, fmt.Sprintf("publish %d", i))
			}
			got := expectMessages(t, ch, n)
			for i, m := range got {
				want := received{Topic: topic, Payload: fmt.Sprintf("m%03d", i), QoS: qos}
				if m != want {
					t.Fatalf("message %d is %+v, want %+v", i, m, want)
				}
			}
			expectNoMessage(t, ch, 100*time.Millisecond)
		})
	}
}

func TestPaho311Retained(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	pub, _ := pahoConnect(t, addr, "ret-pub", nil)
	waitToken(t, pub.Publish("ret/state", 1, true, "on"), "publish retained")

	ch, h := pahoSink()
	sub, _ := pahoConnect(t, addr, "ret-sub", nil)
	pahoSubscribe(t, sub, map[string]byte{"ret/#": 1}, h)
	got := expectMessages(t, ch, 1)[0]
	// A retained message sent for a new subscription has RETAIN set [MQTT-3.3.1-8].
	if want := (received{Topic: "ret/state", Payload: "on", QoS: 1, Retain: true}); got != want {
		t.Fatalf("retained delivery %+v, want %+v", got, want)
	}
	// A live publish to an existing subscription has RETAIN clear [MQTT-3.3.1-9].
	waitToken(t, pub.Publish("ret/state", 1, true, "off"), "publish retained")
	if got, want := expectMessages(t, ch, 1)[0], (received{Topic: "ret/state", Payload: "off", QoS: 1}); got != want {
		t.Fatalf("live delivery %+v, want %+v", got, want)
	}

	// An empty retained payload clears the topic [MQTT-3.3.1-10].
	waitToken(t, pub.Publish("ret/state", 1, true, ""), "clear retained")
	expectMessages(t, ch, 1)
	ch2, h2 := pahoSink()
	late, _ := pahoConnect(t, addr, "ret-late", nil)
	pahoSubscribe(t, late, map[string]byte{"ret/#": 1}, h2)
	expectNoMessage(t, ch2, 200*time.Millisecond)
}

func TestPaho311WillOnAbruptClose(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	ch, h := pahoSink()
	obs, _ := pahoConnect(t, addr, "will-observer", nil)
	pahoSubscribe(t, obs, map[string]byte{"will/#": 1}, h)

	// A client that disconnects normally does not send its will [MQTT-3.14.4-3].
	polite, _ := pahoConnect(t, addr, "will-polite", func(o *mqtt.ClientOptions) {
		o.SetWill("will/polite", "gone", 1, false)
	})
	polite.Disconnect(250)

	var mu sync.Mutex
	var raw *breakableConn
	lost := make(chan error, 1)
	pahoConnect(t, addr, "will-abrupt", func(o *mqtt.ClientOptions) {
		o.SetWill("will/abrupt", "gone", 1, false)
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
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	})
	mu.Lock()
	bc := raw
	mu.Unlock()
	// Closing the socket under Paho, without DISCONNECT, is a network
	// failure for the broker: it publishes the will [MQTT-3.1.2-8].
	if err := bc.Break(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got := expectMessages(t, ch, 1)[0]
	if want := (received{Topic: "will/abrupt", Payload: "gone", QoS: 1}); got != want {
		t.Fatalf("will %+v, want %+v", got, want)
	}
	select {
	case <-lost:
	case <-time.After(wait):
		t.Fatalf("Paho did not report the lost connection")
	}
	expectNoMessage(t, ch, 100*time.Millisecond)
}

func TestPaho311PersistentSession(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	const id = "keeper"
	persistent := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }

	first, present := pahoConnect(t, addr, id, persistent)
	if present {
		t.Fatalf("first connection: session present")
	}
	_, h := pahoSink()
	pahoSubscribe(t, first, map[string]byte{"persist/#": 1}, h)
	first.Disconnect(250)
	waitOffline(t, b, id)

	pub, _ := pahoConnect(t, addr, "keeper-pub", nil)
	// QoS 0 is not queued for an offline session by default. It goes first:
	// a QoS 0 token completes once written, but the broker handles one
	// connection's packets in order, so the PUBACKs below come after it.
	waitToken(t, pub.Publish("persist/qos0", 0, false, "dropped"), "publish QoS 0")
	const n = 5
	for i := range n {
		waitToken(t, pub.Publish(fmt.Sprintf("persist/%d", i), 1, false, fmt.Sprintf("m%d", i)), "publish")
	}
	eventually(t, func() bool {
		st, ok := b.ClientStats(id)
		return ok && st.Queued == n
	}, "5 messages queued for the offline session")

	ch, h2 := pahoSink()
	_, present = pahoConnect(t, addr, id, func(o *mqtt.ClientOptions) {
		persistent(o)
		// The session's subscription delivers at once, before the client
		// could subscribe again: the default handler takes it.
		o.SetDefaultPublishHandler(h2)
	})
	if !present {
		t.Fatalf("reconnection: session not present [MQTT-3.2.2-2]")
	}
	got := expectMessages(t, ch, n)
	for i, m := range got {
		if want := (received{Topic: fmt.Sprintf("persist/%d", i), Payload: fmt.Sprintf("m%d", i), QoS: 1}); m != want {
			t.Fatalf("message %d is %+v, want %+v", i, m, want)
		}
	}
	expectNoMessage(t, ch, 100*time.Millisecond)
}

func TestPaho31(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t)
	v31 := func(o *mqtt.ClientOptions) { o.SetProtocolVersion(3) }
	ch, h := pahoSink()
	sub, _ := pahoConnect(t, addr, "v31-sub", v31)
	pahoSubscribe(t, sub, map[string]byte{"v31/+": 2}, h)
	pub, _ := pahoConnect(t, addr, "v31-pub", v31)
	for qos := range byte(3) {
		waitToken(t, pub.Publish(fmt.Sprintf("v31/q%d", qos), qos, false, "hello"), "publish")
	}
	got := expectMessages(t, ch, 3)
	for qos, m := range got {
		if want := (received{Topic: fmt.Sprintf("v31/q%d", qos), Payload: "hello", QoS: byte(qos)}); m != want {
			t.Fatalf("message %d is %+v, want %+v", qos, m, want)
		}
	}
}
