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
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// pubcompGate is a store that counts the commits recording outbound QoS 2
// deliveries as AwaitPubcomp (PUBREC received) and can hold the first of
// them until released, as a slow disk would.
type pubcompGate struct {
	*memstore.Store
	commits atomic.Int64 // commits with an AwaitPubcomp record
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func newPubcompGate() *pubcompGate {
	return &pubcompGate{Store: memstore.New(), held: make(chan struct{}), release: make(chan struct{})}
}

func (g *pubcompGate) Commit(b *broker.Batch, durable bool) error {
	for _, op := range b.Ops {
		if op.Kind == broker.OpSetInflight && op.Delivery.State == broker.AwaitPubcomp {
			if !durable {
				panic("AwaitPubcomp recorded without sync")
			}
			if g.commits.Add(1) == 1 {
				close(g.held)
				<-g.release
			}
			break
		}
	}
	return g.Store.Commit(b, durable)
}

func (g *pubcompGate) open() { g.once.Do(func() { close(g.release) }) }

// qos2Window publishes n QoS 2 messages to a persistent subscriber of
// topic "w" and returns the packet ids the subscriber received them under.
func qos2Window(t *testing.T, addr string, sub *mqtttest.Client, n int) []uint16 {
	t.Helper()
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "q2-pub", true)
	var buf []byte
	for i := range n {
		buf, _ = (&packet.Publish{Topic: "w", QoS: 2, PacketID: uint16(i + 1), Payload: fmt.Appendf(nil, "m%d", i)}).Append(buf, packet.V311)
	}
	pub.SendRaw(buf)
	for range n {
		if _, ok := pub.Expect().(*packet.Pubrec); !ok {
			t.Fatal("publisher: want PUBREC")
		}
	}
	pids := make([]uint16, n)
	for i := range n {
		p := sub.ExpectPublish()
		if p.QoS != 2 || string(p.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("delivery %d: %+v", i, p)
		}
		pids[i] = p.PacketID
	}
	return pids
}

// TestPubrelWaitsForItsRecordAndPubrecsShareACommit: the PUBRELs answering
// a subscriber's PUBRECs are sent only once the AwaitPubcomp state is on
// disk [MQTT-4.3.3-1], and the PUBRECs that arrive while one commit runs
// ride the next one together (the reader reads on: the PINGREQ behind
// them is answered while the first commit is held), instead of one commit
// each. The PUBRELs keep the order of the PUBRECs [MQTT-4.6.0-4].
func TestPubrelWaitsForItsRecordAndPubrecsShareACommit(t *testing.T) {
	const n = 64
	g := newPubcompGate()
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: g})
	t.Cleanup(g.open)
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "q2-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
	pids := qos2Window(t, addr, sub, n)

	var buf []byte
	for _, pid := range pids {
		buf, _ = (&packet.Pubrec{PacketID: pid}).Append(buf, packet.V311)
	}
	buf, _ = (&packet.Pingreq{}).Append(buf, packet.V311)
	sub.SendRaw(buf)
	<-g.held
	// The reader handled every PUBREC and the PINGREQ while the first
	// record is held, and no PUBREL went out ahead of its record.
	if p := sub.Expect(); p.Type() != packet.PINGRESP {
		t.Fatalf("got %s before the first AwaitPubcomp record was on disk, want PINGRESP", p.Type())
	}
	sub.ExpectNone(100 * time.Millisecond)
	g.open()
	for i, pid := range pids {
		rel, ok := sub.Expect().(*packet.Pubrel)
		if !ok || rel.PacketID != pid {
			t.Fatalf("PUBREL %d: got %+v, want packet id %d [MQTT-4.6.0-4]", i, rel, pid)
		}
	}
	// The held commit took the PUBRECs there were when it started (one or
	// more), the next one all the rest.
	if c := g.commits.Load(); c > 2 {
		t.Fatalf("%d commits recorded %d PUBRECs, want at most 2", c, n)
	}
}

// TestCrashAroundPubrecIsExactlyOnce kills the broker (a copy of its store
// as it stands, nothing shut down) around a subscriber's PUBRECs: before
// the AwaitPubcomp records are on disk the client got no PUBREL and still
// holds the packet ids, so the PUBLISHes come again with DUP under the same
// ids [MQTT-4.3.3-2]; once they are, the restarted broker sends PUBREL,
// never the PUBLISH again [MQTT-4.3.3-1].
func TestCrashAroundPubrecIsExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		written bool // the AwaitPubcomp records reached the store before the crash
	}{{"before the record", false}, {"after the PUBRELs", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 8
			g := newPubcompGate()
			r := &restartable{t: t, st: g.Store, o: broker.Options{Store: g}}
			var addr string
			r.b, addr = mqtttest.StartBroker(t, r.o)
			t.Cleanup(g.open)
			sub, _ := mqtttest.Connect(t, addr, packet.V311, "q2-crash", false)
			sub.Subscribe(1, packet.Subscription{Filter: "w", QoS: 2})
			pids := qos2Window(t, addr, sub, n)
			var buf []byte
			for _, pid := range pids {
				buf, _ = (&packet.Pubrec{PacketID: pid}).Append(buf, packet.V311)
			}
			sub.SendRaw(buf)
			<-g.held
			if tc.written {
				g.open()
				for range pids {
					if _, ok := sub.Expect().(*packet.Pubrel); !ok {
						t.Fatal("want PUBREL")
					}
				}
			} else {
				sub.ExpectNone(100 * time.Millisecond) // no PUBREL while the record is not on disk
			}
			sub.Conn.Close()

			r.st = g.Store
			addr = r.crashSnapshot()
			sub = mqtttest.Dial(t, addr, packet.V311)
			if ack := sub.Connect(&packet.Connect{ClientID: "q2-crash", KeepAlive: 60}); !ack.SessionPresent {
				t.Fatal("session lost in the crash")
			}
			for i, pid := range pids {
				p := sub.Expect()
				if tc.written {
					if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != pid {
						t.Fatalf("item %d: got %+v, want PUBREL %d [MQTT-4.3.3-1]", i, p, pid)
					}
					continue
				}
				pub, ok := p.(*packet.Publish)
				if !ok || !pub.Dup || pub.PacketID != pid || string(pub.Payload) != fmt.Sprintf("m%d", i) {
					t.Fatalf("item %d: got %+v, want PUBLISH m%d with DUP and packet id %d [MQTT-4.3.3-2]", i, p, i, pid)
				}
			}
			sub.ExpectNone(100 * time.Millisecond)
		})
	}
}

// failingPubrecStore fails the commits that record a QoS 2 delivery's
// PUBREC (AwaitPubcomp) while fail is set.
type failingPubrecStore struct {
	broker.Store
	fail atomic.Bool
}

func (s *failingPubrecStore) Commit(b *broker.Batch, durable bool) error {
	if s.fail.Load() {
		for _, op := range b.Ops {
			if op.Kind == broker.OpSetInflight && op.Delivery != nil && op.Delivery.State == broker.AwaitPubcomp {
				return errors.New("disk full")
			}
		}
	}
	return s.Store.Commit(b, durable)
}

// TestFailedPubrecWriteKeepsSessionWithStore: the write of a PUBREC's
// AwaitPubcomp record fails; the connection ends without PUBREL, and the
// session in memory still awaits the PUBREC, as the store does: resumed,
// the broker sends the PUBLISH again with DUP and the same packet id
// [MQTT-4.3.3-1], not a PUBREL the store does not know of (one that a
// restart would follow with the PUBLISH again, which the client, having
// released the id, would take for a new message [MQTT-4.3.3-2]).
func TestFailedPubrecWriteKeepsSessionWithStore(t *testing.T) {
	st := &failingPubrecStore{Store: memstore.New()}
	_, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "q2-sub", false)
	sub.Subscribe(1, packet.Subscription{Filter: "q2", QoS: 2})
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "q2-pub", true)
	pub.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 1, Payload: []byte("once")})
	if _, ok := pub.Expect().(*packet.Pubrec); !ok {
		t.Fatal("publisher: want PUBREC")
	}
	p := sub.ExpectPublish()
	st.fail.Store(true)
	sub.Send(&packet.Pubrec{PacketID: p.PacketID})
	if got := sub.ExpectClosed(); len(got) != 0 {
		t.Fatalf("got %v before the close; no PUBREL may be sent without its record", got)
	}
	st.fail.Store(false)

	sub = mqtttest.Dial(t, addr, packet.V311)
	if ack := sub.Connect(&packet.Connect{ClientID: "q2-sub", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	again, ok := sub.Expect().(*packet.Publish)
	if !ok || !again.Dup || again.PacketID != p.PacketID || string(again.Payload) != "once" {
		t.Fatalf("got %+v, want the PUBLISH again with DUP and packet id %d", again, p.PacketID)
	}
	sub.Send(&packet.Pubrec{PacketID: again.PacketID})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("want PUBREL %d", p.PacketID)
	}
	sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
	sub.ExpectNone(200 * time.Millisecond)
}
