package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestPartitionMinorityAcknowledgesNothing: a network partition, every
// node up, node 1 alone on one side and holding the message log's
// leader. Node 1 never acknowledges a write a quorum did not store: its
// log writes fail (held, then refused), its journal's durable commit
// fails as a want of quorum (broker.ErrStoreNoQuorum: the broker tries
// it again, then refuses the client visibly). The majority goes on: it
// elects a new leader, stores writes, and takes node 1's session over
// (the kick finds nobody to answer it). Once healed, node 1 closes its
// connection of that session (it sees the claim in the owners bucket:
// a client id is connected on one node [MQTT-3.1.4-2]), follows the log
// again from where it was, hands over what the majority stored
// meanwhile, and stores writes again; none of the writes it reported
// failed is in the log.
func TestPartitionMinorityAcknowledgesNothing(t *testing.T) {
	cfgs := configs(t, 3, 3)
	pn := partitionable(t, cfgs)
	ms := startLogged(t, cfgs)
	n1, n2 := ms[0], ms[1]
	logWarm(t, n1.Node, "pt/warm")
	leadLog(t, n1.Node)
	j1, j2 := n1.Journal(memstore.New()), n2.Journal(memstore.New())
	t.Cleanup(func() { j1.Close(); j2.Close() })
	const key = "t1\x00dev"
	session := broker.Op{Kind: broker.OpPutSession, ClientID: key, Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: broker.NoExpiry}}
	claim(t, member{n1.Node, &n1.host.fakeHost}, key)
	load(t, j1, key)
	commit(t, j1, session)
	n1.lw.retryFor = 3 * time.Second // a write no quorum answers is held that long, then refused

	pn.Split(n1.cfg.Node)
	cut := time.Now()
	var r logRecorder
	for i := range 5 {
		r.log(n1.Node, qos1("pt/minority", payloadf("%d", i)))
	}
	err := j1.Commit(&broker.Batch{Ops: []broker.Op{session}}, true)
	if err == nil || !errors.Is(err, broker.ErrStoreNoQuorum) {
		t.Fatalf("n1's durable journal commit while cut off: %v, want a want of quorum (broker.ErrStoreNoQuorum)", err)
	}
	seq := logOK(t, n2.Node, "pt/majority") // after the majority elected a leader
	t.Logf("the majority stored a write %v after the partition", time.Since(cut).Round(time.Millisecond))
	mqtttest.Eventually(t, 60*time.Second, func() bool { // once the owners bucket has a leader on this side
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return n2.Claim(ctx, key) == nil
	}, "n2 taking the session over")
	for i, x := range r.wait(t, 60*time.Second, "n1's writes answered") {
		if x.err == nil {
			t.Fatalf("n1's write %d acknowledged (seq %d) while cut off from the two others", i, x.seq)
		}
		if i == 0 {
			t.Logf("n1's writes refused: %v", x.err)
		}
	}

	pn.Heal()
	healed := time.Now()
	mqtttest.Eventually(t, 60*time.Second, func() bool {
		for _, e := range n1.host.delivered() {
			if e.seq == seq {
				return true
			}
		}
		return false
	}, "n1's follower handing over the majority's write after the partition")
	// n1 closes its connection of the session n2 took over: the kick
	// found nobody, the owners watch sees the claim.
	mqtttest.Eventually(t, 60*time.Second, func() bool { return slices.Contains(n1.host.kicks(), key) },
		"n1 closing its connection of the session n2 took over during the partition")
	t.Logf("n1 closed its connection of the session %v after the partition healed", time.Since(healed).Round(time.Millisecond))
	if c := n1.Counters(); c.KicksMissed != 1 || c.KicksReceived != 0 {
		t.Fatalf("n1: KicksMissed %d, KicksReceived %d; want 1 and 0 (the kick could not arrive)", c.KicksMissed, c.KicksReceived)
	}
	logOK(t, n1.Node, "pt/healed")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := n2.js.Stream(ctx, logStream)
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := logSubject("pt/minority")
	if m, err := s.GetLastMsgForSubject(ctx, subj); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("a write n1 reported failed is in the log (seq %v, err %v)", m, err)
	}
	if n := pn.Unnamed(); n > 0 {
		t.Fatalf("%d route connections went through without an INFO naming their node: the partition may not have cut them", n)
	}
}
