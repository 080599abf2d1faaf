package broker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// willNode is a fakeNode that keeps wills (broker.WillKeeper): it records
// what the broker asks it to keep and drop.
type willNode struct {
	*fakeNode
	mu    sync.Mutex
	kept  map[string]*broker.StoredSession // under mu
	calls []string                         // "keep key" / "drop key", under mu
}

func (n *willNode) KeepWill(key string, rec *broker.StoredSession) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kept[key] = rec
	n.calls = append(n.calls, "keep "+key)
}

func (n *willNode) DropWill(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.kept, key)
	n.calls = append(n.calls, "drop "+key)
}

func (n *willNode) keeps(key string) *broker.StoredSession {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kept[key]
}

func startWillNode(t *testing.T, cl *fakeCluster, name string) (*willNode, *broker.Broker, string) {
	t.Helper()
	n := &willNode{fakeNode: cl.node(name), kept: map[string]*broker.StoredSession{}}
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}, Fabric: n})
	return n, b, addr
}

func willConnect(delay uint32, expiry uint32) packet.Connect {
	p := packet.Connect{CleanStart: true, Will: &packet.Will{Topic: "lwt/dev", Payload: []byte("gone"), QoS: 1}}
	if delay > 0 {
		p.Will.Properties.WillDelayInterval = delay
		p.Will.Properties.Set(packet.PropWillDelayInterval)
	}
	if expiry > 0 {
		p.Properties.SessionExpiryInterval = expiry
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	return p
}

// TestClusterKeepsAWillWhileItMayBeDue: the cluster holds a copy of a
// connection's will (with its holder, for the authorization of whoever
// sends it) from CONNECT until this node has decided it: sent on an
// abnormal end, discarded on a normal DISCONNECT [MQTT-3.1.2-10], kept
// through a 5.0 Will Delay Interval until it is sent or the session
// resumes [MQTT-3.1.3-9].
func TestClusterKeepsAWillWhileItMayBeDue(t *testing.T) {
	cl := newFakeCluster(t)
	n, _, addr := startWillNode(t, cl, "A")
	key := broker.SessionKey("t1", "dev")

	c, _ := connectTenant(t, addr, packet.V5, "t1", "dev", willConnect(0, 0))
	rec := n.keeps(key)
	if rec == nil || rec.Will == nil || rec.Will.Topic != "lwt/dev" || string(rec.Will.Payload) != "gone" {
		t.Fatalf("kept %+v, want the will on lwt/dev", rec)
	}
	if rec.Holder == nil || rec.Holder.Tenant != "t1" {
		t.Fatalf("kept holder %+v, want tenant t1", rec.Holder)
	}
	leave(c) // DISCONNECT 0x00: the will is discarded
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return n.keeps(key) == nil }, "the discarded will dropped")

	watcher, _ := connectTenant(t, addr, packet.V5, "t1", "watcher", packet.Connect{CleanStart: true})
	subscribe(t, watcher, 1, "lwt/#", 1)
	c, _ = connectTenant(t, addr, packet.V5, "t1", "dev", willConnect(0, 0))
	if n.keeps(key) == nil {
		t.Fatal("second connection's will not kept")
	}
	c.Conn.Close() // abnormal end: the will is sent here
	receive(t, watcher, "lwt/dev", "gone", 1)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return n.keeps(key) == nil }, "the sent will dropped")

	// Delayed: kept while it waits, dropped when the session resumes.
	c, _ = connectTenant(t, addr, packet.V5, "t1", "dev", willConnect(60, 300))
	c.Conn.Close()
	time.Sleep(100 * time.Millisecond)
	if n.keeps(key) == nil {
		t.Fatal("a will waiting out its delay is not kept")
	}
	p := packet.Connect{}
	p.Properties.SessionExpiryInterval = 300
	p.Properties.Set(packet.PropSessionExpiryInterval)
	connectTenant(t, addr, packet.V5, "t1", "dev", p)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return n.keeps(key) == nil }, "the cancelled will dropped")
	watcher.ExpectNone(200 * time.Millisecond)
}

// TestOrphanWillIsPublished: the will of a client whose node died, handed
// to this node's broker, is published to its subscribers, authorized
// again for its holder; a delayed one is cancelled when the client
// resumes here in time [MQTT-3.1.3-9].
func TestOrphanWillIsPublished(t *testing.T) {
	cl := newFakeCluster(t)
	_, b, addr := startWillNode(t, cl, "B")
	watcher, _ := connectTenant(t, addr, packet.V5, "t1", "watcher", packet.Connect{CleanStart: true})
	subscribe(t, watcher, 1, "lwt/#", 1)
	rec := &broker.StoredSession{ClientID: broker.SessionKey("t1", "dev"), Version: packet.V5, ExpiryInterval: 300,
		Will:   &broker.StoredMessage{Topic: "lwt/dev", Payload: []byte("node died"), QoS: 1, Origin: broker.SessionKey("t1", "dev")},
		Holder: &broker.StoredHolder{Tenant: "t1", Username: "t1"}}
	b.SendOrphanWill(rec)
	receive(t, watcher, "lwt/dev", "node died", 1)

	// The session is held here (as a session adopted from the cluster's
	// journal would be); a delayed will is not sent when it resumes in
	// time.
	p := packet.Connect{}
	p.Properties.SessionExpiryInterval = 300
	p.Properties.Set(packet.PropSessionExpiryInterval)
	c, _ := connectTenant(t, addr, packet.V5, "t1", "dev", p)
	leave(c)
	delayed := *rec
	delayed.WillDelay = 1
	b.SendOrphanWill(&delayed)
	connectTenant(t, addr, packet.V5, "t1", "dev", p)
	watcher.ExpectNone(1500 * time.Millisecond)
}
