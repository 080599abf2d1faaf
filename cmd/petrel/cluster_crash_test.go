package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// The cluster's failure tests (issue 22): three petrel serve processes on
// loopback, nodes killed with SIGKILL (by PID) or stopped, clients moving
// to a surviving node with their sessions. Each test's own comment says
// what it holds the cluster to.

// TestClusterSessionResumedAfterKill: persistent subscribers (5.0 with a
// session expiry, 3.1.1 with clean session 0) subscribe on node 1 to a
// QoS 1 and a QoS 2 topic and go offline; a publisher on node 2 has 200
// messages on each acknowledged; node 1 is killed with SIGKILL. Each
// subscriber resumes on node 3 with clean start 0: the session is there
// (session present 1 [MQTT-3.2.2-2]), every message arrives, once, in
// order per topic [MQTT-4.6.0-6] [MQTT-4.3.3-2], and the subscriptions
// work on: a message published on node 2 afterwards arrives.
func TestClusterSessionResumedAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts three brokers and kills one")
	}
	const n = 200
	nodes := startCluster3(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	filters := []packet.Subscription{{Filter: "resume/q1", QoS: 1}, {Filter: "resume/q2", QoS: 2}}
	subs := []*crashSubscriber{
		{id: "resume-v5", v: packet.V5, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
		{id: "resume-v311", v: packet.V311, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
	}
	for _, s := range subs {
		if err := s.session(n1.addr(), true, nil); err != nil { // subscribes, then goes offline
			t.Fatalf("%s on n1: %v", s.id, err)
		}
	}

	pub := join(t, n2, packet.V5, "u1", "resume-pub", true)
	acked := map[byte][]int{}
	pid := uint16(0)
	for i := range n {
		for _, q := range []byte{1, 2} {
			pid++
			publishAcked(t, pub, fmt.Sprintf("resume/q%d", q), i, q, pid)
			acked[q] = append(acked[q], i)
		}
	}
	n1.kill(t)
	killed := time.Now()
	t.Logf("%d QoS 1 and %d QoS 2 messages acknowledged on n2; n1 killed", n, n)

	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !s.isClosed() {
				if s.session(n3.addr(), false, nil) != nil { // ends when the test closes it (or after 10 s of silence)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	defer wg.Wait()
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	began := time.Now()
	complete := func() bool {
		for _, s := range subs {
			if lost, _ := s.sessions(); lost > 0 || !s.hasAll("resume/q1", acked[1]) || !s.hasAll("resume/q2", acked[2]) {
				return false
			}
		}
		return true
	}
	for !complete() && time.Since(began) < 30*time.Second && !anyLost(subs) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range subs {
		if lost, resumed := s.sessions(); lost > 0 || resumed == 0 {
			t.Fatalf("%s on n3 after kill -9 of n1: session present 0 on %d of %d connections: the session was not resumed [MQTT-3.2.2-2]", s.id, lost, lost+resumed)
		}
	}
	for _, s := range subs {
		for _, q := range []byte{1, 2} {
			topic := fmt.Sprintf("resume/q%d", q)
			checkDelivery(t, s.id, topic, q, s.delivered(topic), acked[q], false) // sent once only: no repeat even at QoS 1
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("both sessions resumed on n3 with %d messages each, in %v", 2*n, time.Since(began).Round(time.Millisecond))

	// The resumed subscriptions are live on n3. A write may still pause
	// for the election of a leader n1 had: retry until acknowledged.
	// n3's follower of the log may have read from a consumer on n1: it
	// makes a new one within seconds of n1's death.
	for _, q := range []byte{1, 2} {
		mqtttest.Eventually(t, 30*time.Second, func() bool {
			return publishedOnce(n2.addr(), fmt.Sprintf("resume/q%d", q), n, q)
		}, fmt.Sprintf("a QoS %d publish on n2 acknowledged", q))
	}
	mqtttest.Eventually(t, 15*time.Second, func() bool {
		for _, s := range subs {
			if !s.hasAll("resume/q1", []int{n}) || !s.hasAll("resume/q2", []int{n}) {
				return false
			}
		}
		return true
	}, "a message published on n2 after the resumption reaching both subscribers on n3")
	t.Logf("a message published on n2 after the resumption reached both subscribers on n3 %v after the kill", time.Since(killed).Round(time.Millisecond))
}

// TestClusterKillUnderLoadLosesNothing: four publishers (QoS 1 and QoS 2,
// 3.1.1 and 5.0, persistent sessions, 32 unacknowledged at most, one topic
// each, the payload a sequence number) on nodes 2 and 3, and persistent
// subscribers on nodes 1 (going offline and back at random) and 2, while
// one node at a time is killed with SIGKILL and restarted, three times:
// the JetStream meta leader, the message log's leader, then one at random.
// A client whose node dies resumes its session on a surviving one (clean
// start 0: session present 1) and resends what was unacknowledged
// [MQTT-4.4.0-1]. Then every acknowledged message reaches each
// subscriber, first arrivals in order per topic [MQTT-4.6.0-6], a QoS 2
// message never twice [MQTT-4.3.3-2]; no session is lost.
func TestClusterKillUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts three brokers and kills them in turn")
	}
	const kills = 3
	nodes := startCluster3(t)
	filters := []packet.Subscription{{Filter: "load/#", QoS: 2}}
	subs := []*crashSubscriber{
		{id: "load-sub-n1", v: packet.V311, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
		{id: "load-sub-n2", v: packet.V5, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
	}
	for i, s := range subs {
		if err := s.session(nodes[i].addr(), true, nil); err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
	}
	online := make(chan struct{}) // closed: sub n1 stays online (the drain)
	always := make(chan struct{}) // sub n2 is online throughout
	close(always)
	done := make(chan struct{})
	var swg sync.WaitGroup
	for i, s := range subs {
		on := online
		if i == 1 {
			on = always
		}
		swg.Add(1)
		go func() {
			defer swg.Done()
			s.run(liveAddr(nodes, i), on, done)
		}()
	}

	pubs := []*clusterPublisher{
		{id: "load-pub-1", topic: "load/n2/q1", qos: 1, v: packet.V5},
		{id: "load-pub-2", topic: "load/n2/q2", qos: 2, v: packet.V311},
		{id: "load-pub-3", topic: "load/n3/q1", qos: 1, v: packet.V311},
		{id: "load-pub-4", topic: "load/n3/q2", qos: 2, v: packet.V5},
	}
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	began := time.Now()
	for i, p := range pubs {
		p.window, p.pace = 32, 10*time.Millisecond
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			p.run(liveAddr(nodes, 1+i/2), stop)
		}()
	}
	time.Sleep(time.Duration(1500+rand.IntN(1000)) * time.Millisecond)
	for round := range kills {
		i := victim(t, nodes, round)
		nodes[i].kill(t)
		t.Logf("%v: kill -9 %s", time.Since(began).Round(time.Millisecond), nodes[i].name)
		time.Sleep(time.Duration(1000+rand.IntN(1000)) * time.Millisecond) // its clients move to the survivors
		nodes[i].restart(t)
		t.Logf("%v: %s restarted and accepting CONNECTs", time.Since(began).Round(time.Millisecond), nodes[i].name)
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
	}
	close(stop)
	pwg.Wait()
	published := time.Since(began)
	close(online)

	drainStart := time.Now()
	for !(hasAllAcked(subs[0], pubs) && hasAllAcked(subs[1], pubs)) && time.Since(drainStart) < 25*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(drainStart)
	for _, s := range subs {
		s.close()
	}
	close(done)
	swg.Wait()

	total := 0
	for _, p := range pubs {
		total += len(p.acked())
	}
	if total == 0 {
		t.Fatal("nothing was acknowledged; the test tested nothing")
	}
	for _, p := range pubs {
		sent, refused, resumed, lost := p.counts()
		t.Logf("%s (%s QoS %d): %d published, %d acknowledged, %d refused; %d reconnections resumed the session, %d found none",
			p.id, p.topic, p.qos, sent, len(p.acked()), refused, resumed, lost)
		if lost > 0 {
			t.Errorf("%s: %d of its reconnections found no session (session present 0) [MQTT-3.2.2-2]", p.id, lost)
		}
	}
	for _, s := range subs {
		deliveries, dups := 0, 0
		for _, p := range pubs {
			got := s.delivered(p.topic)
			deliveries += len(got)
			dups += checkDelivery(t, s.id, p.topic, p.qos, got, p.acked(), true)
		}
		lost, resumed := s.sessions()
		t.Logf("%s: %d deliveries, %d QoS 1 repeats; %d reconnections resumed the session, %d found none", s.id, deliveries, dups, resumed, lost)
		if lost > 0 {
			t.Errorf("%s: %d of its reconnections found no session (session present 0) [MQTT-3.2.2-2]", s.id, lost)
		}
	}
	t.Logf("published for %v across %d kills (%d acknowledged); drained in %v", published.Round(time.Millisecond), kills, total, drained.Round(time.Millisecond))
	logFailures(t, nodes)
}

// failureRE matches Petrel's warnings and errors about writes it could
// not make (a publish refused, a write not stored), with the reason.
var failureRE = regexp.MustCompile(`level=(?:WARN|ERROR) msg="((?:cluster: |store )[^"]*(?:not written|not stored|write failed|refused|not logged)[^"]*)"(?:.*? err="([^"]{0,80}))?`)

// logFailures reports, per node, how often each kind of write failure
// was logged (lines are rate-limited: a count of lines, not of
// failures), so that a run's refusals can be traced to their cause.
func logFailures(t *testing.T, nodes []*clusterNode) {
	for _, n := range nodes {
		counts := map[string]int{}
		for _, l := range n.history {
			for _, m := range failureRE.FindAllStringSubmatch(l.String(), -1) {
				counts[m[1]+": "+m[2]]++
			}
		}
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			t.Logf("%s logged %d time(s): %s", n.name, counts[k], k)
		}
	}
}

// TestClusterPartitionMinorityRefusesPersistentWrites: a network partition,
// every node up, node 1 alone on one side (its routes cut by proxies of
// the test). Node 1 cannot have a quorum store a message, so it never
// acknowledges one that a persistent session would need: a 5.0 QoS 1
// publish matching persistent subscriptions gets PUBACK with a failure
// reason code, or the connection is closed; a 3.1.1 one gets no PUBACK
// (the connection is closed, 3.1.1 has no other way to refuse); a
// persistent CONNECT is refused with 0x88 (3.1.1: return code 3), while
// clean clients connected before keep exchanging QoS 0. The majority
// goes on: its publishes are acknowledged, and a client whose session
// node 1 held resumes it there (session present 1 [MQTT-3.2.2-2]). Once
// the partition heals, node 1 closes its old connection of that session
// (a client id is connected on one node [MQTT-3.1.4-2]; the client is a
// 3.1.1 one, whose connection just ends), acknowledges persistent
// writes again, and every acknowledged message reaches the persistent
// subscribers.
func TestClusterPartitionMinorityRefusesPersistentWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts three brokers and partitions them")
	}
	nodes, part := startCluster3Split(t)
	n1, n2 := nodes[0], nodes[1]
	filters := []packet.Subscription{{Filter: "minority/#", QoS: 1}}
	subs := []*crashSubscriber{ // one on each side
		{id: "minority-sub-n1", v: packet.V5, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
		{id: "minority-sub-n2", v: packet.V311, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}},
	}
	for i, s := range subs {
		if err := s.session(nodes[i].addr(), true, nil); err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
	}
	// Connected while the cluster is whole.
	q0sub := join(t, n1, packet.V5, "u1", "minority-q0-sub", true)
	q0sub.Subscribe(1, packet.Subscription{Filter: "live/#", QoS: 0})
	q0pub := join(t, n1, packet.V311, "u1", "minority-q0-pub", true)
	pub5 := join(t, n1, packet.V5, "u1", "minority-pub-v5", true)
	pub3 := join(t, n1, packet.V311, "u1", "minority-pub-v311", true)
	moving := join(t, n1, packet.V311, "u1", "minority-moving", false) // its session moves to n2

	part.Split(n1.name)
	split := time.Now()

	// A 5.0 QoS 1 publish matching persistent subscriptions: refused or
	// closed, never PUBACK 0x00 / 0x10; a 3.1.1 one (sent at the same
	// time): no PUBACK, the connection closed.
	pub5.Send(&packet.Publish{Topic: "minority/a", QoS: 1, PacketID: 1, Payload: []byte("0")})
	pub3.Send(&packet.Publish{Topic: "minority/a", QoS: 1, PacketID: 1, Payload: []byte("1")})
	{
		p, err := pub5.Read(45 * time.Second) // a write is held for up to 20 s, waiting for a quorum
		switch {
		case err == nil:
			if a, ok := p.(*packet.Puback); ok && !a.ReasonCode.IsError() {
				t.Errorf("5.0: PUBACK %v on a node cut off from the quorum: a message no quorum stored was acknowledged", a.ReasonCode)
			} else if !ok {
				if _, ok := p.(*packet.Disconnect); !ok {
					t.Errorf("5.0: got %s, want PUBACK with a reason code >= 0x80, or the connection closed", p.Type())
				}
			}
		case connClosed(err):
		default:
			t.Errorf("neither refused nor acknowledged within 45 s: %v", err)
		}
		t.Logf("5.0 publish on the minority answered %v after the split", time.Since(split).Round(time.Millisecond))
	}
	{
		p, err := pub3.Read(45 * time.Second)
		switch {
		case err == nil:
			t.Errorf("3.1.1: got %s on a node cut off from the quorum, want the connection closed without PUBACK", p.Type())
		case connClosed(err):
		default:
			t.Errorf("connection neither closed nor answered within 45 s: %v", err)
		}
	}
	// A persistent CONNECT: CONNACK 0x88 (3.x: 3).
	{
		for _, v := range []packet.Version{packet.V5, packet.V311} {
			s := &crashSubscriber{id: "minority-new-" + v.String(), v: v, user: "u1"}
			c, ack, err := dialConnect(n1.addr(), s.connectPacket())
			if err == nil {
				c.nc.Close()
				t.Errorf("%s persistent CONNECT accepted on a node cut off from the quorum", v)
			} else if ack == nil || ack.ReasonCode != packet.ServerUnavailable {
				t.Errorf("%s persistent CONNECT: %v, want CONNACK 0x88 (3.x: return code 3)", v, err)
			}
		}
	}
	// Clean clients connected before exchange QoS 0 on the minority side.
	{
		q0pub.Send(&packet.Publish{Topic: "live/x", Payload: []byte("q0")})
		p := next(t, q0sub, 5*time.Second)
		if p == nil || p.Topic != "live/x" || string(p.Payload) != "q0" {
			t.Errorf("the clean subscriber on the minority side got %+v, want live/x q0", p)
		}
	}
	// The majority goes on.
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		return publishedOnce(n2.addr(), "minority/c", 2000, 1)
	}, "PUBACK 0x00 on the majority side during the partition")
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		c, ack, err := dialConnect(n2.addr(), &packet.Connect{Version: packet.V311, ClientID: "minority-moving", KeepAlive: 60,
			UsernameFlag: true, Username: "u1", PasswordFlag: true, Password: []byte(ctlPassword)})
		if err != nil {
			return false
		}
		if !ack.SessionPresent {
			c.nc.Close()
			t.Fatalf("minority-moving on n2 during the partition: session present 0, want 1 [MQTT-3.2.2-2]")
		}
		mqtttest.NewClient(t, c.nc, packet.V311) // stays connected: closed when the test ends
		return true
	}, "a session n1 held resumed on n2 during the partition")

	part.Heal()
	healed := time.Now()
	// n1 closes its connection of the session n2 took over: a client id
	// is connected on one node [MQTT-3.1.4-2]. 3.1.1 has no DISCONNECT
	// from the server: the connection ends.
	if p, err := moving.Read(60 * time.Second); err == nil {
		t.Fatalf("n1's connection of the session taken over: got %s, want it closed", p.Type())
	} else if !connClosed(err) {
		t.Fatalf("n1 kept its connection of the session n2 took over 60 s after the partition healed: %v", err)
	}
	t.Logf("n1 closed its connection of the session taken over %v after the partition healed", time.Since(healed).Round(time.Millisecond))
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		return publishedOnce(n1.addr(), "minority/b", 1000, 1)
	}, "PUBACK 0x00 on n1 once the partition healed")

	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !s.isClosed() {
				if s.session(nodes[i].addr(), false, nil) != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	defer wg.Wait()
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		for _, s := range subs {
			if !s.hasAll("minority/b", []int{1000}) || !s.hasAll("minority/c", []int{2000}) {
				return false
			}
		}
		return true
	}, "the acknowledged messages of both sides reaching the persistent subscribers on n1 and n2")
	if n := part.Unnamed(); n > 0 {
		t.Fatalf("%d route connections went through without an INFO naming their node: the partition may not have cut them", n)
	}
}

// TestClusterRollingRestartKeepsSessions: persistent subscribers on each of
// the three nodes and two publishers (QoS 1 and QoS 2, persistent) run
// while each node in turn is stopped (SIGTERM, waited for) and started
// again. A client of the stopping node resumes on another node: session
// present 1 each time [MQTT-3.2.2-2]. Every acknowledged message reaches
// every subscriber. Duplicates and order are logged, not failed: when a
// stop moves the log's leader, a write that failed can be resent after
// later ones of its connection were stored (docs/clustering.md, "Not
// there yet").
func TestClusterRollingRestartKeepsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts three brokers and restarts each")
	}
	nodes := startCluster3(t)
	filters := []packet.Subscription{{Filter: "roll/#", QoS: 2}}
	var subs []*crashSubscriber
	for i, v := range []packet.Version{packet.V5, packet.V311, packet.V5} {
		s := &crashSubscriber{id: fmt.Sprintf("roll-sub-n%d", i+1), v: v, user: "u1", filters: filters, got: map[string][]int{}, awaiting: map[uint16]bool{}}
		if err := s.session(nodes[i].addr(), true, nil); err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		subs = append(subs, s)
	}
	online := make(chan struct{})
	close(online) // online throughout: only the restarts move them
	done := make(chan struct{})
	var swg sync.WaitGroup
	for i, s := range subs {
		swg.Add(1)
		go func() {
			defer swg.Done()
			s.run(liveAddr(nodes, i), online, done)
		}()
	}
	pubs := []*clusterPublisher{
		{id: "roll-pub-1", topic: "roll/q1", qos: 1, v: packet.V311, window: 32, pace: 10 * time.Millisecond},
		{id: "roll-pub-2", topic: "roll/q2", qos: 2, v: packet.V5, window: 32, pace: 10 * time.Millisecond},
	}
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	began := time.Now()
	for i, p := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			p.run(liveAddr(nodes, i), stop)
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	for _, n := range nodes {
		n.stop(t)
		t.Logf("%v: %s stopped", time.Since(began).Round(time.Millisecond), n.name)
		time.Sleep(time.Second) // its clients move to the other nodes
		n.restart(t)
		t.Logf("%v: %s restarted and accepting CONNECTs", time.Since(began).Round(time.Millisecond), n.name)
		time.Sleep(2 * time.Second)
	}
	close(stop)
	pwg.Wait()
	published := time.Since(began)

	drainStart := time.Now()
	for time.Since(drainStart) < 25*time.Second {
		all := true
		for _, s := range subs {
			all = all && hasAllAcked(s, pubs)
		}
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(drainStart)
	for _, s := range subs {
		s.close()
	}
	close(done)
	swg.Wait()

	total := 0
	for _, p := range pubs {
		sent, refused, resumed, lost := p.counts()
		total += len(p.acked())
		t.Logf("%s (%s QoS %d): %d published, %d acknowledged, %d refused; %d reconnections resumed the session, %d found none",
			p.id, p.topic, p.qos, sent, len(p.acked()), refused, resumed, lost)
		if lost > 0 {
			t.Errorf("%s: %d of its reconnections found no session (session present 0) [MQTT-3.2.2-2]", p.id, lost)
		}
	}
	if total == 0 {
		t.Fatal("nothing was acknowledged; the test tested nothing")
	}
	for _, s := range subs {
		deliveries, dups := 0, 0
		for _, p := range pubs {
			got := s.delivered(p.topic)
			deliveries += len(got)
			// What this test holds the cluster to is the issue's: no
			// session lost and nothing acknowledged lost. A moving log
			// leader can still put one resent message after later ones
			// (docs/clustering.md, "Not there yet"): logged here, not
			// failed; the kill -9 test holds the cluster to exactly once
			// and order.
			dups += checkDelivery(lossOnly{t}, s.id, p.topic, p.qos, got, p.acked(), true)
		}
		lost, resumed := s.sessions()
		t.Logf("%s: %d deliveries, %d QoS 1 repeats; %d reconnections resumed the session, %d found none", s.id, deliveries, dups, resumed, lost)
		if lost > 0 {
			t.Errorf("%s: %d of its reconnections found no session (session present 0) [MQTT-3.2.2-2]", s.id, lost)
		}
	}
	t.Logf("published for %v across three restarts (%d acknowledged); drained in %v", published.Round(time.Millisecond), total, drained.Round(time.Millisecond))
}

// publishAcked publishes the number i on topic at qos (1 or 2) from c with
// packet id pid and completes the exchange, failing the test unless the
// node acknowledges it with Success: the message has persistent
// subscribers.
func publishAcked(t *testing.T, c *mqtttest.Client, topic string, i int, qos byte, pid uint16) {
	t.Helper()
	c.Send(&packet.Publish{Topic: topic, QoS: qos, PacketID: pid, Payload: []byte(strconv.Itoa(i))})
	p, err := c.Read(15 * time.Second)
	if err != nil {
		t.Fatalf("%s %d: no acknowledgement: %v", topic, i, err)
	}
	switch a := p.(type) {
	case *packet.Puback:
		if qos == 1 && a.PacketID == pid && a.ReasonCode == packet.Success {
			return
		}
	case *packet.Pubrec:
		if qos == 2 && a.PacketID == pid && a.ReasonCode == packet.Success {
			c.Send(&packet.Pubrel{PacketID: pid})
			if p, err = c.Read(15 * time.Second); err == nil {
				if a, ok := p.(*packet.Pubcomp); ok && a.PacketID == pid && a.ReasonCode == packet.Success {
					return
				}
			}
		}
	}
	t.Fatalf("%s %d at QoS %d: got %v %+v, want the exchange completed with Success", topic, i, qos, err, p)
}

// publishedOnce publishes the number i on topic at qos (1 or 2) from a new
// clean 5.0 connection to addr and reports whether the exchange completed
// with Success.
func publishedOnce(addr, topic string, i int, qos byte) bool {
	c, _, err := dialConnect(addr, &packet.Connect{Version: packet.V5, ClientID: "publish-once", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "u1", PasswordFlag: true, Password: []byte(ctlPassword)})
	if err != nil {
		return false
	}
	defer c.nc.Close()
	if c.send(&packet.Publish{Topic: topic, QoS: qos, PacketID: 1, Payload: []byte(strconv.Itoa(i))}, true) != nil {
		return false
	}
	p, err := c.read(15 * time.Second)
	if err != nil {
		return false
	}
	switch a := p.(type) {
	case *packet.Puback:
		return qos == 1 && a.ReasonCode == packet.Success
	case *packet.Pubrec:
		if qos != 2 || a.ReasonCode != packet.Success || c.send(&packet.Pubrel{PacketID: 1}, true) != nil {
			return false
		}
		p, err = c.read(15 * time.Second)
		comp, ok := p.(*packet.Pubcomp)
		return err == nil && ok && comp.ReasonCode == packet.Success
	}
	return false
}

// connClosed reports whether a read's err is the end of the connection
// (closed or reset by the broker), not a timeout.
func connClosed(err error) bool {
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var oe *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &oe)
}

// anyLost reports whether a subscriber's reconnection found no session.
func anyLost(subs []*crashSubscriber) bool {
	for _, s := range subs {
		if lost, _ := s.sessions(); lost > 0 {
			return true
		}
	}
	return false
}

// lossOnly is an errorReporter that fails the test for lost messages
// only, and logs duplicates and order (TestClusterRollingRestartKeepsSessions).
type lossOnly struct{ t *testing.T }

func (r lossOnly) Helper() { r.t.Helper() }

func (r lossOnly) Errorf(format string, args ...any) {
	r.t.Helper()
	if strings.Contains(format, "lost") {
		r.t.Errorf(format, args...)
		return
	}
	r.t.Logf("not failed (rolling restart): "+format, args...)
}

// TestClusterWillOfKilledNode: the will of a client connected to a node
// that is killed (kill -9) is published once, by a surviving node, to a
// subscriber on another node [MQTT-3.1.2-8]; the will of a client that
// disconnected normally before is not [MQTT-3.1.2-10].
func TestClusterWillOfKilledNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, starts three brokers and kills one")
	}
	nodes := startCluster3(t)
	n1, n2 := nodes[0], nodes[1]
	watcher := join(t, n2, packet.V5, "u1", "will-watcher", true)
	if codes := watcher.Subscribe(1, packet.Subscription{Filter: "lwt/#", QoS: 1}); len(codes) != 1 || codes[0] != 1 {
		t.Fatalf("SUBACK %v", codes)
	}
	dial := func(id, payload string) *mqtttest.Client {
		c := mqtttest.Dial(t, n1.addr(), packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60, UsernameFlag: true, Username: "u1",
			PasswordFlag: true, Password: []byte(ctlPassword),
			Will: &packet.Will{Topic: "lwt/" + id, Payload: []byte(payload), QoS: 1}}); ack.ReasonCode != packet.Success {
			t.Fatalf("%s: CONNACK %v", id, ack.ReasonCode)
		}
		return c
	}
	dial("dev-1", "dev-1 gone")
	quiet := dial("dev-2", "dev-2 gone")
	quiet.Send(&packet.Disconnect{}) // its will is discarded
	quiet.ExpectClosed()
	// The registry writes asynchronously (and its bucket may still be
	// being made right after the cluster formed): wait until n1 kept
	// dev-1's will and dropped dev-2's.
	var last string
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(last, "\n") {
				if strings.Contains(l, "will") {
					t.Log(l)
				}
			}
		}
	}()
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		code, body := getMetrics(t, n1.admin, "op")
		last = body
		kept, _ := metricValue(body, `petrel_cluster_wills_total\{event="kept"\}`)
		dropped, _ := metricValue(body, `petrel_cluster_wills_total\{event="dropped"\}`)
		// dev-2's keep and drop may be one write, or none when the drop
		// came while the keep waited: dev-1's will alone stays.
		return code == http.StatusOK && kept >= 1 && kept-dropped == 1
	}, "n1 keeping dev-1's will")
	n1.kill(t)
	start := time.Now()
	p := next(t, watcher, 45*time.Second)
	if p == nil {
		t.Fatal("no will within 45 s of the kill")
	}
	if p.Topic != "lwt/dev-1" || string(p.Payload) != "dev-1 gone" {
		t.Fatalf("got %q %q, want dev-1's will", p.Topic, p.Payload)
	}
	if p.QoS == 1 {
		watcher.Send(&packet.Puback{PacketID: p.PacketID})
	}
	t.Logf("dev-1's will arrived %v after the kill of its node", time.Since(start).Round(time.Millisecond))
	watcher.ExpectNone(3 * time.Second) // once, and not dev-2's
}
