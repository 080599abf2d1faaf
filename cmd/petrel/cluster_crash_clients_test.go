package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/packet"
)

// clusterPublisher publishes the numbers 0, 1, 2, ... on topic at qos from
// a persistent session (3.1.1, or 5.0 with a session expiry of an hour),
// one every pace and at most window unacknowledged. When its connection
// fails it reconnects, through addr, to whichever node is up, resuming its
// session (clean start false), and first resends what was not
// acknowledged under the same packet ids: PUBLISH with DUP, or PUBREL
// after a PUBREC [MQTT-4.4.0-1]; new publishes continue the packet ids
// where they were. A number counts as acknowledged at PUBACK or PUBREC
// with a success code; one refused with a failure code (5.0) is given up,
// and so is what was in flight when a reconnection finds no session (the
// client discards its session state then, 3.1.1 section 3.2.2.2).
type clusterPublisher struct {
	id, topic string
	qos       byte
	v         packet.Version // 0: 3.1.1
	window    int
	pace      time.Duration

	mu       sync.Mutex
	next     int // the next number to publish
	pid      uint16
	inflight map[uint16]*pubFlight
	order    []uint16 // inflight's packet ids, oldest first
	ack      []int
	refused  int // refused with a failure reason code
	resumed  int // reconnections that found the session
	lost     int // reconnections that found none
}

// pubFlight is one unacknowledged publish: its number, and whether PUBREC
// came (PUBREL sent, PUBCOMP awaited).
type pubFlight struct {
	n        int
	released bool
}

func (p *clusterPublisher) connectPacket() *packet.Connect {
	c := &packet.Connect{Version: p.v, ClientID: p.id, KeepAlive: 30,
		UsernameFlag: true, Username: "u1", PasswordFlag: true, Password: []byte(ctlPassword)}
	if p.v == packet.V5 {
		c.Properties.SessionExpiryInterval = 3600
		c.Properties.Set(packet.PropSessionExpiryInterval)
	}
	return c
}

// run publishes until stop is closed.
func (p *clusterPublisher) run(addr func() string, stop <-chan struct{}) {
	p.mu.Lock()
	p.inflight = map[uint16]*pubFlight{}
	p.mu.Unlock()
	for first := true; ; {
		select {
		case <-stop:
			return
		default:
		}
		c, ack, err := dialConnect(addr(), p.connectPacket())
		if err != nil {
			time.Sleep(50 * time.Millisecond) // the node is down, restarting or without a quorum
			continue
		}
		p.mu.Lock()
		if !first {
			if ack.SessionPresent {
				p.resumed++
			} else {
				p.lost++
				clear(p.inflight)
				p.order = p.order[:0]
			}
		}
		first = false
		p.mu.Unlock()
		p.connection(c, stop)
		c.nc.Close()
	}
}

// doneLocked ends the exchange of pid. p.mu is held.
func (p *clusterPublisher) doneLocked(pid uint16) {
	delete(p.inflight, pid)
	if i := slices.Index(p.order, pid); i >= 0 {
		p.order = slices.Delete(p.order, i, i+1)
	}
}

// connection resends what is unacknowledged, then publishes on c until it
// fails or stop is closed.
func (p *clusterPublisher) connection(c *crashConn, stop <-chan struct{}) {
	freed := make(chan struct{}, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			pk, err := c.read(20 * time.Second) // a leader election pauses writes for up to 10 s
			if err != nil {
				return
			}
			var reply packet.Packet
			p.mu.Lock()
			switch pk := pk.(type) {
			case *packet.Puback:
				if f := p.inflight[pk.PacketID]; f != nil {
					if pk.ReasonCode.IsError() {
						p.refused++
					} else {
						p.ack = append(p.ack, f.n)
					}
					p.doneLocked(pk.PacketID)
				}
			case *packet.Pubrec:
				if f := p.inflight[pk.PacketID]; f != nil {
					switch {
					case pk.ReasonCode.IsError(): // 5.0: refused, the exchange ends here (4.3.3)
						p.refused++
						p.doneLocked(pk.PacketID)
					case !f.released:
						p.ack = append(p.ack, f.n)
						f.released = true
						reply = &packet.Pubrel{PacketID: pk.PacketID}
					default: // a PUBREC again: PUBREL again
						reply = &packet.Pubrel{PacketID: pk.PacketID}
					}
				}
			case *packet.Pubcomp:
				if f := p.inflight[pk.PacketID]; f != nil && f.released {
					p.doneLocked(pk.PacketID)
				}
			default:
				p.mu.Unlock()
				return // DISCONNECT or anything unexpected: reconnect
			}
			p.mu.Unlock()
			if reply != nil && c.send(reply, true) != nil {
				return
			}
			select {
			case freed <- struct{}{}:
			default:
			}
		}
	}()
	failed := func() {
		c.nc.Close()
		<-readerDone
	}

	// The resumed session's unfinished exchanges first, in their order.
	p.mu.Lock()
	var resend []packet.Packet
	for _, pid := range p.order {
		if f := p.inflight[pid]; f.released {
			resend = append(resend, &packet.Pubrel{PacketID: pid})
		} else {
			resend = append(resend, &packet.Publish{Dup: true, Topic: p.topic, QoS: p.qos, PacketID: pid, Payload: []byte(strconv.Itoa(f.n))})
		}
	}
	p.mu.Unlock()
	for _, pk := range resend {
		if c.send(pk, false) != nil {
			failed()
			return
		}
	}
	if c.flush() != nil {
		failed()
		return
	}

	tick := time.NewTicker(p.pace)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			failed()
			return
		case <-readerDone:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		if len(p.inflight) >= p.window {
			p.mu.Unlock()
			select {
			case <-stop:
				failed()
				return
			case <-readerDone:
				return
			case <-freed:
			}
			continue
		}
		for {
			p.pid = p.pid%65535 + 1
			if p.inflight[p.pid] == nil {
				break
			}
		}
		pid, n := p.pid, p.next
		p.next++
		p.inflight[pid] = &pubFlight{n: n}
		p.order = append(p.order, pid)
		p.mu.Unlock()
		if c.send(&packet.Publish{Topic: p.topic, QoS: p.qos, PacketID: pid, Payload: []byte(strconv.Itoa(n))}, true) != nil {
			failed()
			return
		}
	}
}

func (p *clusterPublisher) acked() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.ack...)
}

// counts returns the numbers published, refused, and the reconnections
// that resumed and lost the session.
func (p *clusterPublisher) counts() (sent, refused, resumed, lost int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next, p.refused, p.resumed, p.lost
}

// checkDelivery checks what a subscriber received on topic at qos (got,
// in arrival order) against the numbers its publisher had acknowledged:
// each acknowledged number arrived; first arrivals keep the publishing
// order [MQTT-4.6.0-6]; at QoS 2 nothing arrived twice [MQTT-4.3.3-2]; at
// QoS 1 a repeat is an error unless allowDup (at least once, 4.3.2: a
// resent message may come twice). It reports with t.Errorf and
// returns the repeats.
func checkDelivery(t errorReporter, who, topic string, qos byte, got, acked []int, allowDup bool) (dups int) {
	t.Helper()
	seen := make(map[int]int, len(got))
	last := -1
	ordered := true
	for _, n := range got {
		seen[n]++
		if seen[n] > 1 {
			dups++
			if qos == 2 || !allowDup {
				t.Errorf("%s: %s QoS %d: message %d delivered %d times [MQTT-4.3.3-2]", who, topic, qos, n, seen[n])
			}
			continue
		}
		if n < last && ordered {
			t.Errorf("%s: %s QoS %d: message %d after %d, out of order [MQTT-4.6.0-6]", who, topic, qos, n, last)
			ordered = false // one report per topic
		}
		last = max(last, n)
	}
	missing := 0
	var first []int
	for _, n := range acked {
		if seen[n] == 0 {
			missing++
			if len(first) < 10 {
				first = append(first, n)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %s QoS %d: %d of %d acknowledged messages lost (first %v; %d deliveries)", who, topic, qos, missing, len(acked), first, len(got))
	}
	return dups
}

// errorReporter is the part of *testing.T checkDelivery uses.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// hasAllAcked reports whether sub received every number of each
// publisher's acknowledged ones on its topic.
func hasAllAcked(sub *crashSubscriber, pubs []*clusterPublisher) bool {
	for _, p := range pubs {
		if !sub.hasAll(p.topic, p.acked()) {
			return false
		}
	}
	return true
}

// liveAddr returns the address of nodes[pref] while it is up, else of the
// next node up after it ("" when none is): the node a client (re)connects
// to.
func liveAddr(nodes []*clusterNode, pref int) func() string {
	return func() string {
		for k := range nodes {
			if a := nodes[(pref+k)%len(nodes)].addr(); a != "" {
				return a
			}
		}
		return ""
	}
}

// clusterStatus reads petrel cluster status --json from node n.
func clusterStatus(n *clusterNode) (api.Cluster, error) {
	env := []string{"PETREL_ADMIN_URL=http://" + n.admin, "PETREL_ADMIN_USER=op", "PETREL_ADMIN_PASSWORD=" + ctlPassword}
	var out, errb bytes.Buffer
	var c api.Cluster
	if code := clusterMain([]string{"status", "--json"}, env, &out, &errb); code != 0 {
		return c, fmt.Errorf("petrel cluster status: exit %d: %s", code, errb.String())
	}
	err := json.Unmarshal(out.Bytes(), &c)
	return c, err
}

// victim picks the node to kill: in round 0 the JetStream meta leader, in
// round 1 the leader of the message log (PETREL_MSGS) or, while there is
// none, of any other asset, then one at random.
func victim(t *testing.T, nodes []*clusterNode, round int) int {
	t.Helper()
	if round < 2 {
		for _, n := range nodes {
			st, err := clusterStatus(n)
			if err != nil {
				continue
			}
			leader := st.MetaLeader
			if round == 1 {
				leader = ""
				for _, a := range st.Assets {
					if a.Leader != "" && (leader == "" || a.Name == "PETREL_MSGS") {
						leader = a.Leader
					}
				}
			}
			for i, m := range nodes {
				if m.name == leader {
					return i
				}
			}
			break
		}
	}
	return rand.IntN(len(nodes))
}

// errorRecorder records what checkDelivery reports.
type errorRecorder struct{ errs []string }

func (r *errorRecorder) Helper() {}
func (r *errorRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckDeliveryCatches shows that the cluster failure tests' checker
// reports each way a delivery can be wrong (a lost acknowledged message,
// a QoS 2 message twice, first arrivals out of order, a QoS 1 repeat where
// none may be) and accepts a correct one (unacknowledged messages may or
// may not arrive; a QoS 1 repeat of a resent message is allowed).
func TestCheckDeliveryCatches(t *testing.T) {
	tests := []struct {
		name     string
		qos      byte
		got      []int
		allowDup bool
		wantErr  string // "" for none
		wantDups int
	}{
		{"complete", 2, []int{0, 1, 2}, false, "", 0},
		{"an unacknowledged one arrives too", 1, []int{0, 1, 2, 3}, false, "", 0},
		{"acknowledged lost", 1, []int{0, 2, 3}, true, "1 of 3 acknowledged messages lost", 0},
		{"QoS 2 twice", 2, []int{0, 1, 1, 2}, false, "message 1 delivered 2 times", 1},
		{"QoS 2 twice even when QoS 1 may repeat", 2, []int{0, 1, 2, 0}, true, "message 0 delivered 2 times", 1},
		{"QoS 1 resent", 1, []int{0, 1, 2, 1, 2, 3}, true, "", 2},
		{"QoS 1 repeat not allowed", 1, []int{0, 1, 1, 2}, false, "message 1 delivered 2 times", 1},
		{"out of order", 1, []int{0, 2, 1, 3}, true, "message 1 after 2, out of order", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r errorRecorder
			dups := checkDelivery(&r, "sub", "topic", tt.qos, tt.got, []int{0, 1, 2}, tt.allowDup)
			if dups != tt.wantDups {
				t.Errorf("dups = %d, want %d", dups, tt.wantDups)
			}
			switch {
			case tt.wantErr == "" && len(r.errs) > 0:
				t.Errorf("reported %q for a correct delivery", r.errs)
			case tt.wantErr != "" && (len(r.errs) != 1 || !strings.Contains(r.errs[0], tt.wantErr)):
				t.Errorf("reported %q, want one report containing %q", r.errs, tt.wantErr)
			}
		})
	}
}
