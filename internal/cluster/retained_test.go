package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// TestRetainedTombstones: the tombstone of a cleared retained topic is
// purged from the stream by the node that wrote it, TombstoneTTL after
// it was stored, so that the stream holds the live retained set only; a
// node that restarts after the purge comes up without the topic; a topic
// cleared and set again within the TTL keeps its new message. Then, with
// no JetStream quorum left, retained changes waiting for their
// acknowledgement stay within their byte bound and are given up after
// retainAckWait.
func TestRetainedTombstones(t *testing.T) {
	const ttl = 3 * time.Second
	cfgs := configs(t, 3, 3)
	for i := range cfgs {
		cfgs[i].TombstoneTTL = ttl
	}
	ms := startAll(t, cfgs)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	waitReady(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	set := msg("tomb/a", "v1")
	set.Retain = true
	n1.Retain(set)
	mqtttest.Eventually(t, 15*time.Second, func() bool { return len(n2.host.retainedOf("tomb/a")) == 1 }, "n2 has tomb/a")
	cleared := time.Now()
	n1.Retain(msg("tomb/a", "")) // clear: a tombstone
	n1.Retain(msg("tomb/b", ""))
	mqtttest.Eventually(t, 15*time.Second, func() bool { return n1.Counters().PurgesScheduled >= 2 }, "n1 schedules the purge of its tombstones")
	mqtttest.Eventually(t, 15*time.Second, func() bool {
		rs := n2.host.retainedOf("tomb/a")
		return len(rs) == 2 && len(rs[1].Payload) == 0
	}, "n2 applies the clear")
	// tomb/b, cleared, is set again (on n2) before its tombstone's purge
	// is due: the purge must not take the new message.
	again := msg("tomb/b", "v2")
	again.Retain = true
	n2.Retain(again)
	if el := time.Since(cleared); el >= ttl {
		t.Fatalf("tomb/b set again %s after its clear, not within the tombstone TTL %s: the machine is too slow for this test", el, ttl)
	}
	mqtttest.Eventually(t, 15*time.Second, func() bool {
		rs := n3.host.retainedOf("tomb/b")
		return len(rs) > 0 && string(rs[len(rs)-1].Payload) == "v2"
	}, "n3 applies tomb/b's new message")

	mqtttest.Eventually(t, 30*time.Second, func() bool { return n1.Counters().Purged >= 2 }, "n1 purges its two tombstones")
	if el := time.Since(cleared); el < ttl {
		t.Fatalf("tombstones purged %s after the clear, before their TTL %s", el, ttl)
	}
	if c := n2.Counters().Purged + n3.Counters().Purged; c != 0 {
		t.Fatalf("nodes that did not write the tombstones purged %d", c)
	}
	stream, err := n1.js.Stream(ctx, retainedStream)
	if err != nil {
		t.Fatal(err)
	}
	subjA, _ := retainedSubject("tomb/a")
	if _, err := stream.GetLastMsgForSubject(ctx, subjA); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("tomb/a in the stream after the purge: %v", err)
	}
	subjB, _ := retainedSubject("tomb/b")
	if m, err := stream.GetLastMsgForSubject(ctx, subjB); err != nil || !strings.HasSuffix(string(m.Data), "v2") {
		t.Fatalf("tomb/b's new message after the purge of its tombstone: %v", err)
	}

	// n2 restarts: it follows the stream from its start and gets tomb/b's
	// message, and nothing at all for tomb/a.
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	node, err := Start(ctx, cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	h := &fakeHost{}
	if err := node.Bind(h); err != nil {
		t.Fatal(err)
	}
	sentinel := msg("tomb/sentinel", "s")
	sentinel.Retain = true
	n1.Retain(sentinel)
	// The sentinel is the stream's last message: once the restarted
	// node applied it, it applied everything before it.
	mqtttest.Eventually(t, 30*time.Second, func() bool { return len(h.retainedOf("tomb/sentinel")) == 1 }, "the restarted n2 follows the stream")
	if rs := h.retainedOf("tomb/a"); len(rs) != 0 {
		t.Fatalf("the restarted n2 got %d changes of the purged tomb/a", len(rs))
	}
	if rs := h.retainedOf("tomb/b"); len(rs) != 1 || string(rs[0].Payload) != "v2" {
		t.Fatalf("the restarted n2 got %d changes of tomb/b, want its new message", len(rs))
	}

	// No quorum: n2 and n3 gone, n1's writes are never acknowledged.
	node.Close()
	n3.Close()
	failed0 := n1.Counters().RetainFailed
	big := strings.Repeat("x", 1<<20)
	const count = 200 // 200 MiB: three times the bound
	for range count {
		m := msg("tomb/big", big)
		m.Retain = true
		n1.Retain(m)
		if b := n1.retainInFlight.Load(); b > retainInFlightBytes {
			t.Fatalf("%d bytes of retained changes in flight, bound %d", b, retainInFlightBytes)
		}
	}
	if p := n1.js.PublishAsyncPending(); p > retainInFlightBytes>>20 {
		t.Fatalf("%d retained changes held for their acknowledgement, want at most %d (the byte bound)", p, retainInFlightBytes>>20)
	}
	if f := n1.Counters().RetainFailed - failed0; f < count-retainInFlightBytes>>20 {
		t.Fatalf("%d retained changes refused, want at least %d", f, count-retainInFlightBytes>>20)
	}
	// Unacknowledged changes are given up after retainAckWait, counted,
	// and their bytes released.
	mqtttest.Eventually(t, 3*retainAckWait, func() bool {
		return n1.retainInFlight.Load() == 0 && n1.js.PublishAsyncPending() == 0
	}, "the unacknowledged retained changes given up")
	if f := n1.Counters().RetainFailed - failed0; f != count {
		t.Fatalf("%d of %d retained changes counted as failed", f, count)
	}
}

// TestPurgeQueueBounds: the tombstones waiting for their purge are
// bounded in number (the queue) and in the bytes of their subjects; past
// either a tombstone is not queued and is counted.
func TestPurgeQueueBounds(t *testing.T) {
	n := &Node{purges: make(chan purge, 3)}
	half := strings.Repeat("s", purgeQueueBytes/2)
	n.schedulePurge(half, 1, time.Now())
	n.schedulePurge(half, 2, time.Now())
	n.schedulePurge("r.x", 3, time.Now()) // past the byte bound
	if s, d := n.count.purgesScheduled.Load(), n.count.purgeDropped.Load(); s != 2 || d != 1 {
		t.Fatalf("scheduled %d, dropped %d: want 2 and 1 (byte bound)", s, d)
	}
	n.dequeued(<-n.purges) // what purgeLoop does, less the wait and the purge
	n.schedulePurge("r.y", 4, time.Now())
	n.schedulePurge("r.z", 5, time.Now()) // the queue holds 3
	n.schedulePurge("r.w", 6, time.Now())
	if s, d := n.count.purgesScheduled.Load(), n.count.purgeDropped.Load(); s != 4 || d != 2 {
		t.Fatalf("scheduled %d, dropped %d: want 4 and 2 (count bound)", s, d)
	}
	if b := n.purgeBytes.Load(); b != int64(len(half)+2*len("r.y")) {
		t.Fatalf("%d subject bytes counted, want %d", b, len(half)+2*len("r.y"))
	}
}
