package broker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// Memory bounds of the message path. These tests measure the process's
// live heap, so they do not run in parallel with the package's others.

// stalledSubscriber connects id with a small receive buffer, subscribes
// to filter at qos, reads the SUBACK and then reads nothing more.
func stalledSubscriber(t *testing.T, addr string, v packet.Version, id, filter string, qos byte, props packet.Properties) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, addr, v)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		if err := tc.SetReadBuffer(4 << 10); err != nil {
			t.Fatal(err)
		}
	}
	if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60, Properties: props}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	if codes := c.Subscribe(1, packet.Subscription{Filter: filter, QoS: qos}); len(codes) != 1 || codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("SUBACK %v", codes)
	}
	return c
}

// TestRetainedToStalledSubscribersBounded: subscribers that do not read,
// owed large retained messages, make the broker hold no copy of them: a
// write pass takes messages up to a byte bound and writes a large payload
// from the retained message itself, never encoded into a buffer of its
// own. Five such subscribers to sixteen 2 MiB retained messages held 160
// MiB of encoded copies before (the inline writer encoded up to 64
// messages into one buffer).
func TestRetainedToStalledSubscribersBounded(t *testing.T) {
	const subs, msgs, size = 5, 16, 2 << 20
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "retainer", true)
	payload := bytes.Repeat([]byte{'r'}, size)
	for i := range msgs {
		publish(t, pub, fmt.Sprintf("big/%d", i), 1, true, string(payload), uint16(i+1))
	}
	before := liveHeap(t)
	for i := range subs {
		stalledSubscriber(t, addr, packet.V311, fmt.Sprintf("stalled-%d", i), "big/#", 1, packet.Properties{})
	}
	roundTrip(t, addr) // a bystander pair is served meanwhile
	grown := int64(liveHeap(t)) - int64(before)
	t.Logf("live heap grew by %d KiB for %d stalled subscribers owed %d x %d MiB", grown>>10, subs, msgs, size>>20)
	if limit := int64(8 << 20); grown > limit {
		t.Fatalf("live heap grew by %d MiB for %d stalled subscribers, want under %d MiB (no copy of what they are owed)",
			grown>>20, subs, limit>>20)
	}
}

// floodQoS0 publishes n QoS 0 messages of size bytes to topic, then a
// QoS 1 one whose PUBACK says the broker has handled them all.
func floodQoS0(t *testing.T, c *mqtttest.Client, topic string, n, size int) {
	t.Helper()
	payload := bytes.Repeat([]byte{'f'}, size)
	for range n {
		c.Send(&packet.Publish{Topic: topic, Payload: payload})
	}
	publish(t, c, topic+"/sync", 1, false, "sync", 1)
}

// TestQueueBytesDefaultBoundsStalledSubscriber: with the default limits a
// subscriber that never reads makes the broker hold at most
// DefaultQueueBytes (64 MiB) for it, plus one write pass; beyond, new
// messages are dropped and counted. Before, queue_bytes defaulted to no
// bound and 2,000 messages of 64 KiB stayed queued (128 MiB).
func TestQueueBytesDefaultBoundsStalledSubscriber(t *testing.T) {
	const n, size = 2000, 64 << 10
	b, addr := mqtttest.StartBroker(t, broker.Options{})
	stalledSubscriber(t, addr, packet.V311, "stalled", "flood/#", 0, packet.Properties{})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "flooder", true)
	before := liveHeap(t)
	floodQoS0(t, pub, "flood/x", n, size)
	roundTrip(t, addr)
	grown := int64(liveHeap(t)) - int64(before)
	st := b.Stats()
	t.Logf("live heap grew by %d MiB; %d dropped, %d MiB held", grown>>20, st.MessagesDropped, st.MemoryHeld>>20)
	if limit := int64(broker.DefaultQueueBytes + 32<<20); grown > limit {
		t.Fatalf("live heap grew by %d MiB for one stalled subscriber, want under %d MiB", grown>>20, limit>>20)
	}
	if st.MessagesDropped == 0 {
		t.Fatal("nothing dropped past the default queue_bytes")
	}
	if st.MemoryHeld > broker.DefaultQueueBytes+1<<20 {
		t.Fatalf("%d bytes held for one subscriber, want at most queue_bytes and a write pass", st.MemoryHeld)
	}
}

// TestMemoryBudgetDropsAndCounts: past Options.MemoryBudget, messages to
// every client are dropped (by the queue policy), counted in
// Stats.BudgetDrops and said in one WARN line with the count; an honest
// client still connects meanwhile, and once the stalled subscriber is
// gone the budget is free again and messages flow.
func TestMemoryBudgetDropsAndCounts(t *testing.T) {
	const budget, n, size = 2 << 20, 200, 64 << 10
	logs := &syncBuffer{}
	b, addr := mqtttest.StartBroker(t, broker.Options{
		MemoryBudget: budget,
		Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	stalled := stalledSubscriber(t, addr, packet.V311, "stalled", "flood/#", 0, packet.Properties{})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "flooder", true)
	floodQoS0(t, pub, "flood/x", n, size)
	st := b.Stats()
	t.Logf("budget %d KiB: held %d KiB, %d dropped by the budget", st.MemoryBudget>>10, st.MemoryHeld>>10, st.BudgetDrops)
	if st.MemoryBudget != budget {
		t.Fatalf("MemoryBudget %d, want %d", st.MemoryBudget, budget)
	}
	// What 200 x 64 KiB would need is 12.5 MiB; the budget and its slack
	// (1/16) hold, beside one write pass of the stalled writer.
	if limit := int64(budget + budget/16 + 512<<10); st.MemoryHeld > limit {
		t.Fatalf("held %d bytes, want at most %d", st.MemoryHeld, limit)
	}
	if st.BudgetDrops == 0 || st.MessagesDropped < st.BudgetDrops {
		t.Fatalf("budget drops %d, all drops %d: want budget drops counted in both", st.BudgetDrops, st.MessagesDropped)
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "memory budget reached")
	}, "the WARN line")
	if line := logs.String(); !strings.Contains(line, "level=WARN") || !strings.Contains(line, "dropped=") {
		t.Fatalf("log %q, want a WARN line with the count", line)
	}
	// Every drop since is added up for the next line, 10 s later at the
	// earliest: one line, not one per drop.
	if n := strings.Count(logs.String(), "memory budget reached"); n != 1 {
		t.Fatalf("%d log lines for %d drops, want 1", n, st.BudgetDrops)
	}
	mqtttest.Connect(t, addr, packet.V311, "honest", true) // CONNACK while the budget is full
	_ = stalled.Conn.Close()
	mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().MemoryHeld < budget/2 }, "the stalled subscriber's bytes released")
	roundTrip(t, addr)
}

// syncBuffer is a bytes.Buffer for a logger and a test reading it at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// aliasSubscriber connects a 5.0 client accepting max topic aliases and
// subscribes it to filter at QoS 0.
func aliasSubscriber(t *testing.T, addr, id, filter string, max uint16) *mqtttest.Client {
	t.Helper()
	p := &packet.Connect{ClientID: id, CleanStart: true}
	p.Properties.TopicAliasMaximum = max
	p.Properties.Set(packet.PropTopicAliasMaximum)
	c, _ := connect5(t, addr, p)
	sub5(t, c, 1, filter, 0, 0)
	return c
}

// TestOutboundTopicAliasBounded: the broker gives outbound topic aliases
// to at most TopicAliasOutMaximum topics and TopicAliasOutBytes of topic
// names per connection, however many the client accepts; past either, a
// topic goes out in full without an alias (5.0 section 3.3.2.3.4), and
// every alias sent resolves to its topic [MQTT-3.1.2-26].
func TestOutboundTopicAliasBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("l", 60)
	tests := []struct {
		name       string
		o          broker.Options
		topics     []string
		wantAlias  []bool // the message on topics[i] carries an alias
		maxAliases int
	}{
		{"entries", broker.Options{TopicAliasOutMaximum: 2},
			[]string{"b/1", "b/2", "b/3", "b/1", "b/3", "b/2"},
			[]bool{true, true, false, true, false, true}, 2},
		{"bytes", broker.Options{TopicAliasOutBytes: 100},
			[]string{"b/" + long, "b/x", "b/" + long + "2", "b/y", "b/" + long},
			[]bool{true, true, false, true, true}, 3},
		{"off", broker.Options{TopicAliasOutMaximum: -1},
			[]string{"b/1", "b/1"}, []bool{false, false}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := mqtttest.StartBroker(t, tc.o)
			sub := aliasSubscriber(t, addr, "aliased", "b/#", 65535)
			pub := client5(t, addr, "pub")
			for i, tp := range tc.topics {
				pub5(t, pub, tp, 0, false, fmt.Sprint(i), 0)
			}
			r := &aliasResolver{max: 65535, m: map[uint16]string{}}
			for i, tp := range tc.topics {
				p := sub.ExpectPublish()
				if topic := r.resolve(t, p); topic != tp || string(p.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %d: %q %q, want %q %q", i, topic, p.Payload, tp, fmt.Sprint(i))
				}
				if has := p.Properties.Has(packet.PropTopicAlias); has != tc.wantAlias[i] {
					t.Fatalf("message %d on %q: alias %v, want %v", i, tp, has, tc.wantAlias[i])
				}
			}
			if len(r.m) != tc.maxAliases {
				t.Fatalf("%d aliases set, want %d", len(r.m), tc.maxAliases)
			}
		})
	}
}

// TestOutboundTopicAliasesHoldLittle: a 5.0 subscriber accepting 65535
// aliases, sent many distinct long topics, makes the broker keep no more
// than the alias table's bound: before, each aliased topic stayed in the
// table for the connection's life, with the message (payload included)
// whose memory it shared; 500 topics of 32 KiB kept 32 MiB.
func TestOutboundTopicAliasesHoldLittle(t *testing.T) {
	const n, size = 500, 32 << 10
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub := aliasSubscriber(t, addr, "collector", "long/#", 65535)
	pub := client5(t, addr, "pub")
	before := liveHeap(t)
	payload := bytes.Repeat([]byte{'p'}, size)
	for i := range n {
		topic := fmt.Sprintf("long/%d/%s", i, strings.Repeat("t", size))
		pub.Send(&packet.Publish{Topic: topic, Payload: payload})
		if p := sub.ExpectPublish(); p.Topic != topic {
			t.Fatalf("message %d on %.20q..., want %.20q...", i, p.Topic, topic)
		}
	}
	roundTrip(t, addr)
	grown := int64(liveHeap(t)) - int64(before)
	t.Logf("live heap grew by %d KiB after %d topics of %d KiB", grown>>10, n, size>>10)
	if limit := int64(8 << 20); grown > limit {
		t.Fatalf("live heap grew by %d MiB after %d distinct %d KiB topics, want under %d MiB", grown>>20, n, size>>10, limit>>20)
	}
}
