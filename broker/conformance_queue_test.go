package broker_test

// Petrel's queue rules (DESIGN.md sections 2 and 3): a publisher never
// blocks on a subscriber; each client's queue is bounded, applies the
// configured overflow policy and counts every drop.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

const bigPayload = 64 << 10

// seqPayload is a 64 KiB payload starting with seq.
func seqPayload(seq int) []byte {
	p := make([]byte, bigPayload)
	binary.BigEndian.PutUint32(p, uint32(seq))
	return p
}

func payloadSeq(p []byte) int { return int(binary.BigEndian.Uint32(p)) }

// readAsync reads PUBLISH packets on c in a goroutine until n arrived,
// acknowledging QoS 1, and returns their sequence numbers (or an error) on
// the channel. It uses only the connection, never t, off the test goroutine.
func readAsync(c *mqtttest.Client, n int) <-chan []int {
	out := make(chan []int, 1)
	go func() {
		var seqs []int
		defer func() { out <- seqs }()
		for len(seqs) < n {
			p, err := c.Read(20 * time.Second)
			if err != nil {
				return
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				return
			}
			seqs = append(seqs, payloadSeq(pub.Payload))
			if pub.QoS == 1 {
				ack, _ := (&packet.Puback{PacketID: pub.PacketID}).Append(nil, c.Version) // a PUBACK with a non-zero id always encodes
				if _, err := c.Conn.Write(ack); err != nil {
					return
				}
			}
		}
	}()
	return out
}

// drainAll reads every PUBLISH that arrives on c until none comes for
// idle, and returns their sequence numbers.
func drainAll(t *testing.T, c *mqtttest.Client, idle time.Duration) []int {
	t.Helper()
	var seqs []int
	for {
		p, err := c.Read(idle)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return seqs
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			t.Fatalf("got %s, want PUBLISH", p.Type())
		}
		seqs = append(seqs, payloadSeq(pub.Payload))
		ackPublish(t, c, pub)
	}
}

func TestQueueSlowConsumerDoesNotBlockPublisherOrOthers(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t)
	const n = 300 // 300 x 64 KiB: far beyond the socket buffers of the slow client
	slow := connect(t, addr, "slow", true)
	subscribe(t, slow, 1, "big/#", 1)
	fast := connect(t, addr, "fast", true)
	subscribe(t, fast, 1, "big/#", 1)
	got := readAsync(fast, n)

	pub := connect(t, addr, "big-pub", true)
	start := time.Now()
	for i := range n {
		pub.Send(&packet.Publish{Topic: "big/t", QoS: 1, PacketID: uint16(i + 1), Payload: seqPayload(i)})
		if a := expect[*packet.Puback](t, pub); a.PacketID != uint16(i+1) {
			t.Fatalf("PUBACK %d, want %d", a.PacketID, i+1)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("publishing took %v: the publisher was slowed by the slow consumer", d)
	}
	var seqs []int
	select {
	case seqs = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("fast subscriber did not get its messages")
	}
	if len(seqs) != n {
		t.Fatalf("fast subscriber got %d messages, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			t.Fatalf("fast subscriber message %d has seq %d", i, s)
		}
	}
	// The slow one is still connected, holding everything unacknowledged.
	st, ok := b.ClientStats("slow")
	if !ok || !st.Online || st.Queued+st.Inflight != n || st.Dropped != 0 {
		t.Fatalf("slow client stats %+v (found %v), want online with %d queued or in flight", st, ok, n)
	}
	if st, _ := b.ClientStats("fast"); st.Dropped != 0 {
		t.Fatalf("fast client dropped %d", st.Dropped)
	}
}

func TestQueueLimitWithInflightWindowExactCounts(t *testing.T) {
	t.Parallel()
	// A QoS 1 subscriber that reads but never acknowledges: MaxInflight 10
	// messages in flight, QueueMessages 100 queued, every further one dropped
	// by the policy, and counted.
	const total, window, limit = 300, 10, 100
	cases := []struct {
		policy string
		want   func(i int) bool // whether message i is delivered
	}{
		{broker.PolicyDropNew, func(i int) bool { return i < window+limit }},
		{broker.PolicyDropOldest, func(i int) bool { return i < window || i >= total-limit }},
	}
	for _, tc := range cases {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			b, addr := mqtttest.StartBroker(t, broker.Options{QueueMessages: limit, MaxInflight: window, QueuePolicy: tc.policy})
			sub := connect(t, addr, "limited", true)
			subscribe(t, sub, 1, "lim", 1)
			pub := connect(t, addr, "lim-pub", true)
			for i := range total {
				pub.Send(&packet.Publish{Topic: "lim", QoS: 1, PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "%d", i)})
				expect[*packet.Puback](t, pub) // never held back by the full queue
			}
			st, _ := b.ClientStats("limited")
			if st.Dropped != total-window-limit || st.Queued != limit || st.Inflight != window {
				t.Fatalf("stats %+v, want %d dropped, %d queued, %d in flight", st, total-window-limit, limit, window)
			}
			if s := b.Stats(); s.MessagesDropped < total-window-limit {
				t.Fatalf("broker counts %d drops, want at least %d", s.MessagesDropped, total-window-limit)
			}
			var want []string
			for i := range total {
				if tc.want(i) {
					want = append(want, fmt.Sprint(i))
				}
			}
			got := readPublishes(t, sub, len(want), nil)
			for i, p := range got {
				if string(p.Payload) != want[i] {
					t.Fatalf("message %d is %q, want %q (policy %s)", i, p.Payload, want[i], tc.policy)
				}
			}
			sub.ExpectNone(quiet)
		})
	}
}

func TestQueueLimitNonReadingSubscriber(t *testing.T) {
	t.Parallel()
	// A QoS 0 subscriber that does not read its socket: once the kernel
	// buffers are full the broker's queue fills and the policy applies.
	for _, policy := range []string{broker.PolicyDropNew, broker.PolicyDropOldest} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			b, addr := mqtttest.StartBroker(t, broker.Options{QueueMessages: 100, QueuePolicy: policy})
			slow := connect(t, addr, "stuck", true)
			subscribe(t, slow, 1, "stuck/#", 0)
			pub := connect(t, addr, "stuck-pub", true)

			dropped := func() uint64 {
				st, _ := b.ClientStats("stuck")
				return st.Dropped
			}
			total, extra := 0, -1
			for ; extra != 0; total++ {
				if total >= 3000 {
					t.Fatalf("no drop after %d x 64 KiB messages to a client that does not read", total)
				}
				pub.Send(&packet.Publish{Topic: "stuck/t", QoS: 1, PacketID: uint16(total%65535 + 1), Payload: seqPayload(total)})
				expect[*packet.Puback](t, pub) // the publisher is never blocked
				if extra < 0 && dropped() > 0 {
					extra = 20 // drops started: a few more, then stop
				}
				if extra > 0 {
					extra--
				}
			}
			d := dropped()
			if d == 0 {
				t.Fatalf("no drop counted")
			}
			// Now read everything: what arrives plus what was dropped is
			// everything published, in order, without duplicates.
			seqs := drainAll(t, slow, time.Second)
			if len(seqs)+int(d) != total {
				t.Fatalf("received %d + dropped %d != published %d", len(seqs), d, total)
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] <= seqs[i-1] {
					t.Fatalf("out of order: %d after %d", seqs[i], seqs[i-1])
				}
			}
			last := seqs[len(seqs)-1] == total-1
			switch policy {
			case broker.PolicyDropNew:
				if last {
					t.Fatalf("drop-new: the newest message was delivered; it should have been refused")
				}
			case broker.PolicyDropOldest:
				if !last {
					t.Fatalf("drop-oldest: the newest message (%d) was not delivered; last got %d", total-1, seqs[len(seqs)-1])
				}
			}
			// The client is still served normally afterwards.
			publish(t, pub, "stuck/t", 1, false, "", 1)
			if p := slow.ExpectPublish(); len(p.Payload) != 0 {
				t.Fatalf("got %d bytes, want the empty message", len(p.Payload))
			}
		})
	}
}

func TestQueueOfflineSessionLimited(t *testing.T) {
	t.Parallel()
	b, addr := mqtttest.StartBroker(t, broker.Options{QueueMessages: 100})
	sub := connect(t, addr, "offline-limited", false)
	subscribe(t, sub, 1, "ol", 1)
	disconnect(t, b, sub, "offline-limited")
	pub := connect(t, addr, "ol-pub", true)
	for i := range 150 {
		publish(t, pub, "ol", 1, false, fmt.Sprint(i), uint16(i+1))
	}
	st, _ := b.ClientStats("offline-limited")
	if st.Queued != 100 || st.Dropped != 50 {
		t.Fatalf("offline stats %+v, want 100 queued and 50 dropped (drop-new)", st)
	}
	sub = reconnect(t, addr, "offline-limited", true)
	got := readPublishes(t, sub, 100, nil)
	for i, p := range got {
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q (drop-new keeps the oldest)", i, p.Payload)
		}
	}
	sub.ExpectNone(quiet)
}

// TestQueuedMessagesOwnTheirBytes: the reader decodes a PUBLISH in place
// and the broker copies topic and payload once, into the message it
// queues. Messages still queued for a subscriber that is not reading keep
// their own bytes while the publisher's read buffer is filled again and
// again, by many packets per read, with other topics and payloads, a
// retained message among them.
func TestQueuedMessagesOwnTheirBytes(t *testing.T) {
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "own-sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "own/keep/#", QoS: 1})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "own-pub", true)
	const n = 300
	var burst []byte
	for i := range n {
		keep := &packet.Publish{Topic: fmt.Sprintf("own/keep/%d", i), Payload: []byte(fmt.Sprintf("payload-%d", i)), QoS: 1, PacketID: uint16(i + 1), Retain: i == n-1}
		other := &packet.Publish{Topic: fmt.Sprintf("own/other/%d", i), Payload: []byte(fmt.Sprintf("XXXXXXXX-%d", i))}
		burst, _ = keep.Append(burst, packet.V311) // valid packets always encode
		burst, _ = other.Append(burst, packet.V311)
	}
	pub.SendRaw(burst)
	for range n {
		if _, ok := pub.Expect().(*packet.Puback); !ok {
			t.Fatal("expected PUBACK")
		}
	}
	for i := range n {
		p := sub.ExpectPublish()
		if want := fmt.Sprintf("own/keep/%d", i); p.Topic != want || string(p.Payload) != fmt.Sprintf("payload-%d", i) {
			t.Fatalf("delivery %d: %q %q, want %q payload-%d", i, p.Topic, p.Payload, want, i)
		}
		sub.Send(&packet.Puback{PacketID: p.PacketID})
	}
	late, _ := mqtttest.Connect(t, addr, packet.V311, "own-late", true)
	late.Subscribe(1, packet.Subscription{Filter: "own/keep/#"})
	if p := late.ExpectPublish(); p.Topic != fmt.Sprintf("own/keep/%d", n-1) || string(p.Payload) != fmt.Sprintf("payload-%d", n-1) || !p.Retain {
		t.Fatalf("retained: %q %q retain=%v", p.Topic, p.Payload, p.Retain)
	}
}
