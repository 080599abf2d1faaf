package broker_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// opLog is a store that records the stored deliveries' Seqs and the
// removals with whether they were synced, and, once armed, holds every
// commit that stores no new delivery until released.
type opLog struct {
	*memstore.Store
	mu struct {
		sync.Mutex
		seqs    []uint64        // OpEnqueue, in order
		removed map[uint64]bool // OpDequeue: synced
		armed   bool
	}
	release chan struct{}
}

func newOpLog() *opLog {
	l := &opLog{Store: memstore.New(), release: make(chan struct{})}
	l.mu.removed = map[uint64]bool{}
	return l
}

func (l *opLog) Commit(b *broker.Batch, durable bool) error {
	enqueues := false
	l.mu.Lock()
	for _, op := range b.Ops {
		switch op.Kind {
		case broker.OpEnqueue:
			enqueues = true
			l.mu.seqs = append(l.mu.seqs, op.Delivery.Seq)
		case broker.OpDequeue:
			l.mu.removed[op.Seq] = l.mu.removed[op.Seq] || durable
		}
	}
	armed := l.mu.armed
	l.mu.Unlock()
	if armed && !enqueues {
		<-l.release
	}
	return l.Store.Commit(b, durable)
}

func (l *opLog) arm() {
	l.mu.Lock()
	l.mu.armed = true
	l.mu.Unlock()
}

func (l *opLog) seqs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uint64(nil), l.mu.seqs...)
}

func (l *opLog) removed(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.mu.removed[seq]
	return ok
}

func (l *opLog) removedSynced(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.removed[seq]
}

// TestStoredQoS2IsSentWithoutAStoreWrite: once a QoS 2 message is stored
// for a persistent subscriber, the broker sends it without writing
// anything more (every other commit is held), under the packet id derived
// from its Seq, which a restart gives it again [MQTT-4.3.3-2].
func TestStoredQoS2IsSentWithoutAStoreWrite(t *testing.T) {
	const n = 16
	l := newOpLog()
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: l})
	t.Cleanup(func() { close(l.release) })
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "ids-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	l.arm()
	pids := qos2Window(t, addr, sub, n)
	seqs := l.seqs()
	if len(seqs) != n {
		t.Fatalf("%d deliveries stored, want %d", len(seqs), n)
	}
	for i, pid := range pids {
		if want := session.PacketIDFor(seqs[i]); pid != want {
			t.Fatalf("message %d (seq %d) sent under packet id %d, want %d", i, seqs[i], pid, want)
		}
	}
}

// TestPubcompRemovalRidesTheNextCommit: the removal of a stored QoS 2
// delivery that PUBCOMP completed starts no commit of its own (its packet
// id is needed again only 32767 deliveries later); it is written synced
// with the next commit of the connection's durable pipeline, here the
// AwaitPubcomp record of the next PUBREC, before that PUBREL is sent; and
// the connection's end writes the last one.
func TestPubcompRemovalRidesTheNextCommit(t *testing.T) {
	l := newOpLog()
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: l})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "rm-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	pids := qos2Window(t, addr, sub, 2)
	seqs := l.seqs()
	sub.Send(&packet.Pubrec{PacketID: pids[0]})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pids[0] {
		t.Fatalf("want PUBREL %d", pids[0])
	}
	sub.Send(&packet.Pubcomp{PacketID: pids[0]})
	sub.Send(&packet.Pingreq{})
	if _, ok := sub.Expect().(*packet.Pingresp); !ok {
		t.Fatal("want PINGRESP")
	}
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if l.removed(seqs[0]) {
			t.Fatalf("the removal of seq %d was committed alone", seqs[0])
		}
	}
	sub.Send(&packet.Pubrec{PacketID: pids[1]})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pids[1] {
		t.Fatalf("want PUBREL %d", pids[1])
	}
	if !l.removedSynced(seqs[0]) {
		t.Fatalf("PUBREL %d sent before the waiting removal of seq %d was written synced", pids[1], seqs[0])
	}
	sub.Send(&packet.Pubcomp{PacketID: pids[1]})
	sub.Send(&packet.Disconnect{})
	sub.ExpectClosed()
	deadline := time.Now().Add(5 * time.Second)
	for !l.removedSynced(seqs[1]) {
		if time.Now().After(deadline) {
			t.Fatalf("the removal of seq %d was not written synced when the connection ended", seqs[1])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCrashAfterUnrecordedSendResendsUnderTheSameID: the broker stops (a
// copy of its store as it stands) after sending stored QoS 2 messages it
// recorded nothing for; the restarted broker sends them again with DUP
// under the same packet ids, so the client, which holds them awaiting
// PUBREL, delivers none twice [MQTT-4.3.3-2] [MQTT-3.3.1-1]; then PUBREL
// follows the PUBRECs as usual.
func TestCrashAfterUnrecordedSendResendsUnderTheSameID(t *testing.T) {
	const n = 8
	r, addr := newRestartable(t, broker.Options{})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "unrec", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	pids := qos2Window(t, addr, sub, n)
	sub.Conn.Close()

	addr = r.crashSnapshot()
	sub = mqtttest.Dial(t, addr, packet.V311)
	if ack := sub.Connect(&packet.Connect{ClientID: "unrec", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("session lost in the crash")
	}
	for i, pid := range pids {
		p := sub.ExpectPublish()
		if !p.Dup || p.PacketID != pid || string(p.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("item %d: got %+v, want m%d with DUP under packet id %d", i, p, i, pid)
		}
		sub.Send(&packet.Pubrec{PacketID: pid})
	}
	for _, pid := range pids {
		if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pid {
			t.Fatalf("want PUBREL %d", pid)
		}
		sub.Send(&packet.Pubcomp{PacketID: pid})
	}
	sub.ExpectNone(100 * time.Millisecond)
}

// failRemovals is a store whose commits carrying a removal (OpDequeue)
// fail while fail is set, as a full disk refuses them.
type failRemovals struct {
	*opLog
	fail atomic.Bool
}

func (f *failRemovals) Commit(b *broker.Batch, durable bool) error {
	if f.fail.Load() {
		for _, op := range b.Ops {
			if op.Kind == broker.OpDequeue {
				return errors.New("disk full")
			}
		}
	}
	return f.opLog.Commit(b, durable)
}

// TestUnconfirmedRemovalIsWrittenAtTheNextConnect: when the commit that
// carries the removal after PUBCOMP fails (here the next PUBREC's), the
// packet id keeps cooling (a crash could still bring the finished
// delivery back) and the connection ends without that PUBREL; the
// session's next CONNECT writes the removal again, synced, before the
// CONNACK, and only then frees the id.
func TestUnconfirmedRemovalIsWrittenAtTheNextConnect(t *testing.T) {
	f := &failRemovals{opLog: newOpLog()}
	b, addr := mqtttest.StartBroker(t, broker.Options{Store: f})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "cool-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	pids := qos2Window(t, addr, sub, 2)
	pid := pids[0]
	sub.Send(&packet.Pubrec{PacketID: pid})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != pid {
		t.Fatalf("want PUBREL %d", pid)
	}
	f.fail.Store(true)
	sub.Send(&packet.Pubcomp{PacketID: pid})
	sub.Send(&packet.Pubrec{PacketID: pids[1]})
	for _, p := range sub.ExpectClosed() { // the commit with the removal failed
		if _, ok := p.(*packet.Pubrel); ok {
			t.Fatalf("PUBREL %d sent without its record", pids[1])
		}
	}
	seq := f.seqs()[0]
	if f.removedSynced(seq) {
		t.Fatal("the failed removal was recorded")
	}
	if ids := b.CoolingIDs("cool-sub"); len(ids) != 1 || ids[0] != pid {
		t.Fatalf("cooling %v, want [%d] while the removal is not on disk", ids, pid)
	}
	f.fail.Store(false)
	sub = mqtttest.Dial(t, addr, packet.V311)
	if ack := sub.Connect(&packet.Connect{ClientID: "cool-sub", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("session lost")
	}
	if !f.removedSynced(seq) {
		t.Fatalf("CONNACK before the removal of seq %d was written synced", seq)
	}
	if ids := b.CoolingIDs("cool-sub"); len(ids) != 0 {
		t.Fatalf("cooling %v after the removal was written, want none", ids)
	}
}
