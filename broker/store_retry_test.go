package broker_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// noQuorumStore fails its next durable commits: the next noQuorum of
// them with broker.ErrStoreNoQuorum (a replicated store electing a
// leader), then the next plain of them with another error.
type noQuorumStore struct {
	broker.Store
	noQuorum, plain atomic.Int32
	failed          atomic.Int32
}

func (s *noQuorumStore) Commit(b *broker.Batch, durable bool) error {
	if durable {
		if s.noQuorum.Add(-1) >= 0 {
			s.failed.Add(1)
			return fmt.Errorf("journal: %w: no stream leader", broker.ErrStoreNoQuorum)
		}
		if s.plain.Add(-1) >= 0 {
			s.failed.Add(1)
			return errors.New("disk full")
		}
	}
	return s.Store.Commit(b, durable)
}

// TestDurableWriteRetriedWithoutQuorum: a durable write no quorum
// acknowledged is written again, and the 5.0 QoS 2 publisher gets PUBREC
// Success once it is stored, not a refusal; the subscriber gets the
// message once and the PUBREL follows its record. Any other store error
// is answered at once (0x80), as before.
func TestDurableWriteRetriedWithoutQuorum(t *testing.T) {
	st := &noQuorumStore{Store: memstore.New()}
	b, addr := mqtttest.StartBroker(t, broker.Options{Store: st})
	sub, _ := mqtttest.Connect(t, addr, packet.V311, "rq-sub", false) // persistent: its deliveries are stored
	sub.Subscribe(1, packet.Subscription{Filter: "rq/#", QoS: 2})
	pub, _ := mqtttest.Connect(t, addr, packet.V5, "rq-pub", true)

	st.noQuorum.Store(3)
	pub.Send(&packet.Publish{Topic: "rq/a", QoS: 2, PacketID: 1, Payload: []byte("held")})
	rec, ok := pub.Expect().(*packet.Pubrec)
	if !ok || rec.ReasonCode != packet.Success {
		t.Fatalf("publisher got %+v, want PUBREC Success once the write is stored", rec)
	}
	if got := st.failed.Load(); got != 3 {
		t.Fatalf("%d failed writes, want 3", got)
	}
	if got := b.Stats().StoreRetried; got != 3 {
		t.Fatalf("StoreRetried = %d, want 3", got)
	}
	p := sub.ExpectPublish()
	if string(p.Payload) != "held" || p.QoS != 2 {
		t.Fatalf("subscriber got %+v", p)
	}
	// The subscriber's PUBREC record also waits out a lost quorum: its
	// PUBREL comes once the record is stored.
	st.noQuorum.Store(2)
	sub.Send(&packet.Pubrec{PacketID: p.PacketID})
	if rel, ok := sub.Expect().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("subscriber: want PUBREL %d", p.PacketID)
	}
	sub.Send(&packet.Pubcomp{PacketID: p.PacketID})
	pub.Send(&packet.Pubrel{PacketID: 1})
	if c, ok := pub.Expect().(*packet.Pubcomp); !ok || c.PacketID != 1 {
		t.Fatal("publisher: want PUBCOMP 1")
	}
	sub.ExpectNone(200 * time.Millisecond)

	retried := b.Stats().StoreRetried
	st.plain.Store(1)
	pub.Send(&packet.Publish{Topic: "rq/b", QoS: 2, PacketID: 2, Payload: []byte("refused")})
	if rec, ok := pub.Expect().(*packet.Pubrec); !ok || rec.ReasonCode != packet.UnspecifiedError {
		t.Fatalf("publisher got %+v, want PUBREC 0x80 for a store error that is not a lost quorum", rec)
	}
	if got := b.Stats().StoreRetried; got != retried {
		t.Fatalf("a plain store error was written again (%d retries)", got-retried)
	}
	sub.ExpectNone(200 * time.Millisecond)
}
