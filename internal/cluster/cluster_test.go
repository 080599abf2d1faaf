package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestCluster runs three nodes in this process, on loopback routes, and
// checks each part of the fabric on them. The subtests share the
// cluster (JetStream takes seconds to form); the last one closes a node.
func TestCluster(t *testing.T) {
	cfgs := configs(t, 3, 3)
	cfgs[1].Connections = func() int { return 7 }
	cfgs[1].InboxBytes = 4 << 20
	ms := startAll(t, cfgs)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	waitReady(t, ms)

	t.Run("Routing", func(t *testing.T) { testRouting(t, n1, n2, n3) })
	t.Run("OneCopyPerNode", func(t *testing.T) { testOneCopy(t, n1, n2) })
	t.Run("LongTopic", func(t *testing.T) { testLongTopic(t, n1, n2) })
	t.Run("ShareGroups", func(t *testing.T) { testShareGroups(t, ms) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, ms) })
	t.Run("Status", func(t *testing.T) { testStatus(t, n1) })
	t.Run("Local", func(t *testing.T) { testLocal(t, ms) })
	t.Run("ClientListenerNeedsToken", func(t *testing.T) { testListenerToken(t, n1) })
	t.Run("SlowBroker", func(t *testing.T) { testSlowBroker(t, n1, n2) })
	t.Run("SlowBrokerBytes", func(t *testing.T) { testSlowBrokerBytes(t, n1, n2) })
	t.Run("ClaimKicksOldOwner", func(t *testing.T) { testClaimKicks(t, n1, n2, n3) })
	t.Run("ClaimUnanswered", func(t *testing.T) { testClaimUnanswered(t, n1, n2) })
	t.Run("ClaimOwnerGone", func(t *testing.T) { testClaimOwnerGone(t, n1, n3) })
}

// testRouting: a Forward on n1 reaches n2, which watches a matching
// filter, with everything the message carries; not n3, which has no
// interest; not n1 itself (its data connection has echo off); and after
// Unwatch nothing reaches n2.
func testRouting(t *testing.T, n1, n2, n3 member) {
	n2.Watch("a/+/c", "")
	n1.Watch("a/+/c", "")
	n3.Watch("sentinel/3", "")
	n2.Watch("sentinel/2", "")
	waitWatched(t, n1, "a/+/c", "", 1)
	waitWatched(t, n1, "sentinel/3", "", 1)
	waitWatched(t, n1, "sentinel/2", "", 1)

	props := &packet.Properties{ContentType: "application/json", UserProperties: []packet.UserProperty{{Key: "site", Value: "7"}}}
	props.Set(packet.PropContentType)
	m := session.NewMessage("a/b/c", []byte(`{"v":1}`))
	m.QoS, m.Retain, m.Origin, m.Properties = 1, true, "t1\x00pub", props
	m.Expiry = time.Now().Add(time.Hour)
	n1.Forward(m)
	n1.Forward(msg("sentinel/3", ""))
	n1.Forward(msg("sentinel/2", ""))

	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.has("sentinel/2") }, "n2's sentinel")
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n3.host.has("sentinel/3") }, "n3's sentinel")
	got := n2.host.topics()
	if !slices.Equal(got, []string{"a/b/c", "sentinel/2"}) {
		t.Fatalf("n2 received %q, want a/b/c then its sentinel", got)
	}
	r := n2.host.all()[0]
	if r.share != "" || r.msg.QoS != 1 || !r.msg.Retain || r.msg.Origin != "t1\x00pub" || string(r.msg.Payload) != `{"v":1}` ||
		r.msg.Properties == nil || r.msg.Properties.ContentType != "application/json" ||
		len(r.msg.Properties.UserProperties) != 1 || r.msg.Expiry.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("n2 received %+v (share %q)", r.msg, r.share)
	}
	if got := n3.host.topics(); !slices.Equal(got, []string{"sentinel/3"}) {
		t.Fatalf("n3 (no interest in a/b/c) received %q", got)
	}
	if got := n1.host.topics(); len(got) != 0 {
		t.Fatalf("n1 received its own messages back: %q", got)
	}

	n2.Unwatch("a/+/c", "")
	n1.Unwatch("a/+/c", "")
	waitUnwatched(t, n1, "a/+/c", "")
	n1.Forward(msg("a/b/c", "after unwatch"))
	n1.Forward(msg("sentinel/2", "second"))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.count("sentinel/2") == 2 }, "n2's second sentinel")
	if c := n2.host.count("a/b/c"); c != 1 {
		t.Fatalf("n2 received %d messages on a/b/c, want 1 (none after Unwatch)", c)
	}
}

// testOneCopy: a message matching four of n2's filters reaches n2's
// broker once, although NATS delivers one copy per subscription.
func testOneCopy(t *testing.T, n1, n2 member) {
	filters := []string{"x/#", "x/+", "+/y", "x/y"}
	for _, f := range filters {
		n2.Watch(f, "")
	}
	n2.Watch("x/#", "") // a second Watch of one filter adds no subscription
	for _, f := range filters {
		waitWatched(t, n1, f, "", 1)
	}
	dup0 := n2.Counters().Duplicates
	const count = 200
	for i := range count {
		n1.Forward(msg("x/y", fmt.Sprint(i)))
	}
	n1.Forward(msg("x/end/0", "")) // matches x/# only: no copy
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.has("x/end/0") }, "the last message")
	if c := n2.host.count("x/y"); c != count {
		t.Fatalf("n2's broker got %d messages on x/y, want %d: one per message", c, count)
	}
	if d := n2.Counters().Duplicates - dup0; d != 3*count {
		t.Fatalf("%d copies dropped, want %d (3 extra matching subscriptions)", d, 3*count)
	}
	// In the order published.
	i := 0
	for _, r := range n2.host.all() {
		if r.msg.Topic == "x/y" {
			if string(r.msg.Payload) != fmt.Sprint(i) {
				t.Fatalf("message %d has payload %q", i, r.msg.Payload)
			}
			i++
		}
	}
	for _, f := range filters {
		n2.Unwatch(f, "")
	}
	// x/# was watched twice: its subscriptions stay until the second
	// Unwatch.
	if w := n2.watched(); len(w) != 2 || !slices.Contains(w, watchKey{"x/#", ""}) {
		t.Fatalf("watches after one Unwatch each: %v, want x/# and the routing test's sentinel", w)
	}
	n2.Unwatch("x/#", "")
	waitUnwatched(t, n1, "x/#", "")
	if w := n2.watched(); len(w) != 1 {
		t.Fatalf("watches left: %v", w)
	}
}

// testLongTopic: the longest legal MQTT topic, every byte escaped,
// crosses nodes (its protocol lines fit max_control_line); a longer one
// is refused and counted, and the connection keeps working.
func testLongTopic(t *testing.T, n1, n2 member) {
	long := "L/" + strings.Repeat(" ", 65535-2)
	n2.Watch("L/#", "")
	waitWatched(t, n1, "L/#", "", 1)
	n1.Forward(msg(long, "long"))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.has(long) }, "the longest topic on n2")

	tooLong0 := n1.Counters().TooLong
	n1.Forward(msg(long+" ", "too long"))
	if d := n1.Counters().TooLong - tooLong0; d != 1 {
		t.Fatalf("TooLong grew by %d, want 1", d)
	}
	n1.Forward(msg("L/after", ""))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.has("L/after") }, "a message after the refused one")
	n2.Unwatch("L/#", "")
}

// testShareGroups: a share group with a member on each node gets every
// message once, spread over the nodes, n1's own member included.
func testShareGroups(t *testing.T, ms []member) {
	const share = "tenant1\x00g"
	for _, m := range ms {
		m.Watch("s/#", share)
	}
	// Another tenant's group of the same name and filter is another
	// group: it gets its own copy of each message.
	ms[2].Watch("s/#", "tenant2\x00g")
	waitWatched(t, ms[0], "s/#", share, 2)
	waitWatched(t, ms[0], "s/#", "tenant2\x00g", 1)
	const count = 300
	for i := range count {
		ms[0].Forward(msg("s/k", fmt.Sprint(i)))
	}
	seen := make(map[string]int)
	per := make([]int, len(ms))
	other := 0
	mqtttest.Eventually(t, 15*time.Second, func() bool {
		total := 0
		for _, m := range ms {
			for _, r := range m.host.all() {
				if r.msg.Topic == "s/k" && r.share == share {
					total++
				}
			}
		}
		return total >= count
	}, "every shared message")
	for i, m := range ms {
		for _, r := range m.host.all() {
			if r.msg.Topic != "s/k" {
				continue
			}
			switch r.share {
			case share:
				seen[string(r.msg.Payload)]++
				per[i]++
			case "tenant2\x00g":
				other++
			default:
				t.Fatalf("share key %q", r.share)
			}
		}
	}
	if len(seen) != count {
		t.Fatalf("%d distinct messages reached the group, want %d", len(seen), count)
	}
	for p, c := range seen {
		if c != 1 {
			t.Fatalf("message %s reached the group %d times", p, c)
		}
	}
	for i, c := range per {
		if c == 0 {
			t.Fatalf("node n%d's member got none of %d messages: %v", i+1, count, per)
		}
	}
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		c := 0
		for _, r := range ms[2].host.all() {
			if r.share == "tenant2\x00g" {
				c++
			}
		}
		return c == count
	}, "every message to the other tenant's group")
	t.Logf("split over n1, n2, n3: %v", per)
	for _, m := range ms {
		m.Unwatch("s/#", share)
	}
	ms[2].Unwatch("s/#", "tenant2\x00g")
}

// testRetained: a retained message set on n1 reaches the other nodes'
// retained index (not n1's: it has it), and a clear on n2 reaches n1 and
// n3.
func testRetained(t *testing.T, ms []member) {
	n1, n2, n3 := ms[0], ms[1], ms[2]
	m := msg("ret/a b", "v1")
	m.Retain, m.QoS = true, 1
	n1.Retain(m)
	for _, o := range []member{n2, n3} {
		mqtttest.Eventually(t, 15*time.Second, func() bool { return len(o.host.retainedOf("ret/a b")) == 1 }, o.cfg.Node+" has the retained message")
		r := o.host.retainedOf("ret/a b")[0]
		if string(r.Payload) != "v1" || r.QoS != 1 || !r.Retain {
			t.Fatalf("%s got %+v", o.cfg.Node, r)
		}
	}
	n2.Retain(msg("ret/a b", "")) // empty payload: clear
	for _, o := range []member{n1, n3} {
		mqtttest.Eventually(t, 15*time.Second, func() bool {
			rs := o.host.retainedOf("ret/a b")
			return len(rs) > 0 && len(rs[len(rs)-1].Payload) == 0
		}, o.cfg.Node+" has the clear")
	}
	if rs := n1.host.retainedOf("ret/a b"); len(rs) != 1 {
		t.Fatalf("n1 applied %d changes, want only n2's clear (its own set is skipped)", len(rs))
	}
	if c := n1.Counters().RetainFailed; c != 0 {
		t.Fatalf("%d retained changes failed", c)
	}
}

// testStatus: a node sees the three nodes connected, the meta leader,
// the assets' leaders and replicas, and another node's connection count.
func testStatus(t *testing.T, n1 member) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.MetaLeader == "" || len(st.Nodes) != 3 || !st.Nodes[0].Self {
		t.Fatalf("status %+v", st)
	}
	for _, ns := range st.Nodes {
		if !ns.Connected {
			t.Fatalf("node %s not connected: %+v", ns.Name, st.Nodes)
		}
		if ns.Name == "n2" && ns.Connections != 7 {
			t.Fatalf("n2 reports %d connections, want 7 (its hook)", ns.Connections)
		}
	}
	if len(st.Assets) != len(assetNames) {
		t.Fatalf("assets %+v", st.Assets)
	}
	for _, a := range st.Assets {
		if a.Err != "" || a.Leader == "" || len(a.Replicas) != 2 {
			t.Fatalf("asset %+v: want a leader and two followers", a)
		}
	}
}

// testClaimKicks: a claim on n2 of a session held on n1 has n1 close its
// connection [MQTT-3.1.4-2]; claiming it back kicks n2; a kick older than
// the holder's own claim is ignored.
func testClaimKicks(t *testing.T, n1, n2, n3 member) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := "tenant1\x00meter-001/with.dots *>"
	if err := n1.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	if k := n1.host.kicks(); len(k) != 0 {
		t.Fatalf("first claim kicked %q", k)
	}
	if err := n2.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	if k := n1.host.kicks(); !slices.Equal(k, []string{key}) {
		t.Fatalf("n1 kicked %q, want the session once (Claim returns after the answer)", k)
	}
	if err := n1.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	if k := n2.host.kicks(); !slices.Equal(k, []string{key}) {
		t.Fatalf("n2 kicked %q", k)
	}
	// n1 holds epoch 3 now: a kick carrying epoch 2 (n2's stale claim) is
	// refused.
	if _, err := n3.ctl.RequestWithContext(ctx, kickSubject("n1"), appendKick(nil, key, 2)); err != nil {
		t.Fatal(err)
	}
	if k := n1.host.kicks(); len(k) != 1 {
		t.Fatalf("a stale kick closed n1's connection: %q", k)
	}
	// Release on n1, then a claim on n3 has nobody to kick.
	n1.Release(key)
	k := ownerKey(key)
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		_, err := n1.kv.Get(ctx, k)
		return err != nil
	}, "the released owner record to go")
	if err := n3.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	if len(n1.host.kicks()) != 1 || len(n2.host.kicks()) != 1 {
		t.Fatal("a claim after Release kicked a node")
	}
	// A release of n2's old claim (epoch 2) leaves n3's record alone.
	owned := func() bool {
		e, err := n3.kv.Get(ctx, k) // may be answered by a lagging replica
		return err == nil && strings.Contains(string(e.Value()), `"node":"n3"`)
	}
	mqtttest.Eventually(t, 10*time.Second, owned, "n3's record")
	n2.deleteOwner(release{key, 2})
	if !owned() {
		t.Fatal("a stale release deleted n3's record")
	}
}

// testClaimOwnerGone: with the old owner's node closed, a claim returns
// (the kick finds no responders) rather than waiting for its context.
func testClaimOwnerGone(t *testing.T, n1, n3 member) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := "tenant1\x00gone"
	if err := n3.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	// The closed node may have led an asset: JetStream elects a new
	// leader first (a claim fails with a JetStream timeout meanwhile).
	var err error
	for range 5 {
		if err = n1.Claim(ctx, key); err == nil || errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			break
		}
		t.Logf("claim while JetStream recovers: %v", err)
	}
	if err != nil {
		t.Fatalf("claim of a session whose node is gone: %v", err)
	}
	if n1.Counters().KicksSent == 0 {
		t.Fatal("no kick was sent to the gone node")
	}
}

// TestRouteTLS: nodes with certificates from one CA form a cluster over
// TLS routes; a node whose certificate another CA signed cannot join and
// receives nothing.
func TestRouteTLS(t *testing.T) {
	cfgs := configs(t, 3, 1)
	caA, keyA, poolA := newCA(t)
	caB, keyB, poolB := newCA(t)
	cfgs[0].TLS = nodeTLS(t, caA, keyA, poolA)
	cfgs[1].TLS = nodeTLS(t, caA, keyA, poolA)
	cfgs[2].TLS = nodeTLS(t, caB, keyB, poolB)
	ms := startAll(t, cfgs)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	n2.Watch("tls/#", "")
	n3.Watch("tls/#", "")
	waitWatched(t, n1, "tls/#", "", 1)
	n1.Forward(msg("tls/x", "secret"))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n2.host.has("tls/x") }, "n2 over TLS")
	// n1 knows one other node watching tls/# (n2): n3's watch never
	// reached it, and n3 has no route.
	if all, _ := watchers(t, n1, "tls/#", ""); all != 1 {
		t.Fatalf("n1 knows %d nodes watching tls/#, want 1", all)
	}
	if got := n3.host.topics(); len(got) != 0 {
		t.Fatalf("n3, with the wrong CA, received %q", got)
	}
	if r := n3.srv.NumRoutes(); r != 0 {
		t.Fatalf("n3 has %d routes", r)
	}
	// Alone, n3 has no JetStream meta leader: a claim fails at once, so
	// the broker can refuse the CONNECT (server unavailable).
	if err := n3.Claim(context.Background(), "t\x00c"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("claim on a node without quorum: %v, want ErrNotReady", err)
	}
}

// BenchmarkCrossNode measures QoS 0 delivery of 64-byte messages from
// n1's Forward to n2's broker over a loopback route, three nodes up.
func BenchmarkCrossNode(b *testing.B) {
	ms := startAll(b, configs(b, 3, 1))
	var got atomic.Int64
	if err := ms[1].Bind(countHost{&got}); err != nil {
		b.Fatal(err)
	}
	ms[1].Watch("bench/#", "")
	waitWatched(b, ms[0], "bench/#", "", 1)
	m := msg("bench/x", strings.Repeat("x", 64))
	b.SetBytes(64)
	sent := int64(0)
	start := time.Now()
	for b.Loop() {
		ms[0].Forward(m)
		sent++
	}
	// Delivery is asynchronous: wait for the last message (or its drop).
	mqtttest.Eventually(b, time.Minute, func() bool {
		return got.Load()+int64(ms[1].Counters().InboxDropped) >= sent
	}, "every message delivered or dropped")
	// From the first Forward to the last delivery.
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(got.Load())/el, "delivered/s")
	b.ReportMetric(float64(ms[1].Counters().InboxDropped), "dropped")
}

// countHost counts deliveries.
type countHost struct{ n *atomic.Int64 }

func (h countHost) DeliverRemote(*session.Message, string) { h.n.Add(1) }
func (h countHost) ApplyRetained(*session.Message)         {}
func (h countHost) KickRemote(string)                      {}

// TestSingleNode: a node with no peers runs JetStream standalone, with no
// listener at all; Forward does nothing for plain interest but still
// feeds the node's own share groups, which the broker leaves to the
// fabric; Claim works.
func TestSingleNode(t *testing.T) {
	cfgs := configs(t, 1, 3)
	ms := startAll(t, cfgs)
	n := ms[0]
	waitReady(t, ms)
	if n.cfg.replicas() != 1 {
		t.Fatalf("replicas %d, want 1", n.cfg.replicas())
	}
	if p := n.srv.ClusterAddr(); p != nil {
		t.Fatalf("a single node listens for routes on %v", p)
	}
	if a := n.srv.Addr(); a != nil {
		t.Fatalf("a single node listens for NATS clients on %v", a)
	}
	n.Forward(msg("solo/x", "plain")) // no peer, no share group: not sent
	if c := n.Counters().Forwarded; c != 0 {
		t.Fatalf("forwarded %d with one node and no share group", c)
	}
	n.Watch("solo/#", "t\x00g")
	n.Forward(msg("solo/x", "shared"))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return n.host.has("solo/x") }, "the share group's message")
	if r := n.host.all()[0]; r.share != "t\x00g" || string(r.msg.Payload) != "shared" {
		t.Fatalf("got %+v share %q", r.msg, r.share)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Claim(ctx, "t\x00c"); err != nil {
		t.Fatal(err)
	}
	l := n.Local()
	if !l.Ready || !l.MetaLeader || l.Routes != 0 || len(l.Assets) != len(assetNames) {
		t.Fatalf("a single node's local view %+v: want ready, meta leader, no routes, both assets", l)
	}
	for _, a := range l.Assets {
		if !a.Leader || len(a.Followers) != 0 {
			t.Fatalf("asset %+v: a single node leads it, with no followers", a)
		}
	}
}

// testListenerToken: the loopback client listener a clustered node must
// open (nats-server starts routes only after it) refuses a connection
// without the node's random token.
func testListenerToken(t *testing.T, n1 member) {
	addr := n1.srv.Addr()
	if addr == nil {
		t.Fatal("no client listener")
	}
	if ip := addr.(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Fatalf("client listener on %v, want loopback", addr)
	}
	nc, err := nats.Connect("nats://"+addr.String(), nats.NoReconnect(), nats.Timeout(5*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("connected to the node's NATS server without its token")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("error %v, want an authorization violation", err)
	}
}

// blockingHost holds DeliverRemote until released, as a broker that
// broke its non-blocking contract would.
type blockingHost struct {
	*fakeHost
	release chan struct{}
	once    *sync.Once
}

// newBlockingHost returns a blockingHost that lets go when the test ends
// at the latest (a failed test must not leave the dispatcher blocked).
func newBlockingHost(t *testing.T) blockingHost {
	h := blockingHost{&fakeHost{}, make(chan struct{}), new(sync.Once)}
	t.Cleanup(h.letGo)
	return h
}

// letGo releases the held and later deliveries.
func (h blockingHost) letGo() { h.once.Do(func() { close(h.release) }) }

func (h blockingHost) DeliverRemote(msg *session.Message, share string) {
	<-h.release
	h.fakeHost.DeliverRemote(msg, share)
}

// testSlowBroker: when a node's broker does not take messages as fast as
// they come, its inbox holds a bounded number, the rest are dropped
// (counted), and the node's connection survives: later messages arrive.
func testSlowBroker(t *testing.T, n1, n2 member) {
	bh := newBlockingHost(t)
	if err := n2.Bind(bh); err != nil {
		t.Fatal(err)
	}
	defer n2.Bind(n2.host)
	n2.Watch("slow/#", "")
	defer n2.Unwatch("slow/#", "")
	waitWatched(t, n1, "slow/#", "", 1)
	drop0 := n2.Counters().InboxDropped
	const count = inboxLen + 8000
	for i := range count {
		n1.Forward(msg("slow/x", fmt.Sprint(i)))
	}
	// Every message is either held by the inbox (the one in the
	// dispatcher's hands included) or dropped.
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		held, _ := n2.plainIn.held()
		return held+int(n2.Counters().InboxDropped-drop0) >= count
	}, "the inbox full and the rest dropped")
	if held, _ := n2.plainIn.held(); held != inboxLen {
		t.Fatalf("the inbox holds %d messages, want its bound %d", held, inboxLen)
	}
	if n2.Counters().SlowConsumer == 0 {
		t.Fatal("no slow consumer incident counted")
	}
	bh.letGo()
	// The dispatcher drains the inbox; a message sent now arrives: the
	// connection was not cut.
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		c := bh.count("slow/x")
		return c+int(n2.Counters().InboxDropped-drop0) >= count
	}, "the inbox drained")
	if c := bh.count("slow/x"); c != inboxLen {
		t.Fatalf("%d of %d messages delivered: want the inbox's %d", c, count, inboxLen)
	}
	n1.Forward(msg("slow/after", ""))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return bh.has("slow/after") }, "a message after the drops")
}

// testSlowBrokerBytes: large messages fill an inbox by its byte bound
// (Config.InboxBytes, 4 MiB on n2 here) long before its count bound: the
// inbox holds at most that many bytes, the rest are dropped and counted,
// the connection stays up, and what was held is delivered once the
// broker takes messages again.
func testSlowBrokerBytes(t *testing.T, n1, n2 member) {
	const bound = 4 << 20
	if n2.plainIn.maxBytes != bound {
		t.Fatalf("n2's inbox bound is %d bytes, want the configured %d", n2.plainIn.maxBytes, bound)
	}
	bh := newBlockingHost(t)
	if err := n2.Bind(bh); err != nil {
		t.Fatal(err)
	}
	defer n2.Bind(n2.host)
	n2.Watch("big/#", "")
	defer n2.Unwatch("big/#", "")
	waitWatched(t, n1, "big/#", "", 1)
	drop0, slow0 := n2.Counters().InboxDropped, n2.Counters().SlowConsumer
	payload := strings.Repeat("p", 256<<10)
	const count = 64 // 16 MiB of payload: four times the bound
	for i := range count {
		n1.Forward(msg("big/x", fmt.Sprintf("%03d", i)+payload))
	}
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		held, _ := n2.plainIn.held()
		return held+int(n2.Counters().InboxDropped-drop0) >= count
	}, "every large message held or dropped")
	held, bytes := n2.plainIn.held()
	if bytes > bound || held >= count/2 {
		t.Fatalf("the inbox holds %d messages, %d bytes: want at most %d bytes", held, bytes, bound)
	}
	if n2.Counters().SlowConsumer == slow0 {
		t.Fatal("no overflow counted")
	}
	bh.letGo()
	mqtttest.Eventually(t, 30*time.Second, func() bool { return bh.count("big/x") == held }, "the held messages delivered")
	// In order, the first ones: the inbox took messages until it was full.
	for i, r := range bh.all() {
		if got := string(r.msg.Payload[:3]); got != fmt.Sprintf("%03d", i) {
			t.Fatalf("delivery %d is message %s", i, got)
		}
	}
	n1.Forward(msg("big/after", ""))
	mqtttest.Eventually(t, 10*time.Second, func() bool { return bh.has("big/after") }, "a message after the drops")
}

// testClaimUnanswered: when the previous owner's node takes the kick but
// never answers, the claim fails within its context (the broker refuses
// the CONNECT) and the node keeps no record of it.
func testClaimUnanswered(t *testing.T, n1, n2 member) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := "tenant1\x00unanswered"
	if _, err := n1.kv.Put(ctx, ownerKey(key), []byte(`{"node":"ghost","epoch":4}`)); err != nil {
		t.Fatal(err)
	}
	sub, err := n2.ctl.SubscribeSync(kickSubject("ghost")) // takes kicks, answers none
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	mqtttest.Eventually(t, 10*time.Second, func() bool {
		return n1.srv.GlobalAccount().SubscriptionInterest(kickSubject("ghost"))
	}, "the ghost's kick subscription on n1")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := n1.Claim(short, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim with an unanswered kick: %v, want the context's deadline", err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data[8:]) != key {
		t.Fatalf("the ghost got no kick for the session: %v", err)
	}
	n1.mu.Lock()
	_, held := n1.mu.held[key]
	n1.mu.Unlock()
	if held {
		t.Fatal("a failed claim is still held")
	}
}

// BenchmarkLeaderStopPause measures how long session claims pause when
// the node leading the owners bucket stops (gracefully: Close hands
// leadership over), three nodes up. Run it with -benchtime 1x: each
// iteration costs a cluster.
func BenchmarkLeaderStopPause(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	ms := startAll(b, configs(b, 3, 3))
	waitReady(b, ms)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ms[0].Claim(ctx, "t\x00warm"); err != nil {
		b.Fatal(err)
	}
	st, err := ms[0].Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	leader := ""
	for _, a := range st.Assets {
		if a.Name == "KV_"+ownersBucket {
			leader = a.Leader
		}
	}
	var stopped, survivor member
	for _, m := range ms {
		if m.cfg.Node == leader {
			stopped = m
		} else {
			survivor = m
		}
	}
	if stopped.Node == nil {
		b.Fatalf("no leader for the owners bucket: %+v", st.Assets)
	}
	b.ResetTimer()
	start := time.Now()
	if err := stopped.Close(); err != nil {
		b.Fatal(err)
	}
	closed := time.Since(start)
	for i := 0; ; i++ {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := survivor.Claim(c, fmt.Sprint("t\x00after", i))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("claims did not resume: %v", err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "pause-ms")
	b.ReportMetric(float64(closed.Milliseconds()), "close-ms")
}

// BenchmarkInterestGap measures the interest propagation gap: from a
// Watch on one node until another node's server knows of it (and would
// send it a matching message), two nodes up.
func BenchmarkInterestGap(b *testing.B) {
	ms := startAll(b, configs(b, 2, 1))
	i := 0
	var total time.Duration
	for b.Loop() {
		i++
		filter := fmt.Sprintf("gap/%d/+", i)
		subj, _ := TopicSubject(fmt.Sprintf("gap/%d/x", i))
		start := time.Now()
		ms[1].Watch(filter, "")
		for !ms[0].srv.GlobalAccount().SubscriptionInterest(subj) {
			if time.Since(start) > 10*time.Second {
				b.Fatal("interest never arrived")
			}
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(i), "gap-us")
}
