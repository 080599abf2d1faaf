package cluster

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// willKeeper is broker.WillKeeper as the broker declares it; the node
// implements it.
type willKeeper interface {
	KeepWill(key string, rec *broker.StoredSession)
	DropWill(key string)
}

var (
	_ willKeeper     = (*Node)(nil)
	_ orphanWillHost = (*willHost)(nil)
)

// willHost is a fake broker that also publishes orphan wills
// (broker.OrphanWillHost).
type willHost struct {
	fakeHost
	wmu    sync.Mutex
	orphan []*broker.StoredSession
}

func (h *willHost) SendOrphanWill(rec *broker.StoredSession) {
	h.wmu.Lock()
	h.orphan = append(h.orphan, rec)
	h.wmu.Unlock()
}

// orphans returns the wills published so far for session key.
func (h *willHost) orphans(key string) []*broker.StoredSession {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	var out []*broker.StoredSession
	for _, r := range h.orphan {
		if r.ClientID == key {
			out = append(out, r)
		}
	}
	return out
}

// willMember is a started node bound to a willHost.
type willMember struct {
	*Node
	host *willHost
}

// startWillNodes starts a node per configuration, in parallel, each bound
// to a willHost; they are closed when the test ends.
func startWillNodes(t *testing.T, cfgs []Config) []willMember {
	t.Helper()
	ms := make([]willMember, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() {
			ms[i], errs[i] = startWillNode(c)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range ms {
			if m.Node != nil {
				m.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	for _, m := range ms {
		waitWills(t, m)
	}
	return ms
}

func startWillNode(c Config) (willMember, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, c)
	if err != nil {
		return willMember{}, err
	}
	h := &willHost{}
	if err := n.Bind(h); err != nil {
		n.Close()
		return willMember{}, err
	}
	return willMember{n, h}, nil
}

// waitWills waits until m's will registry is open and m is ready
// (claims work).
func waitWills(t *testing.T, m willMember) {
	t.Helper()
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		select {
		case <-m.wills.ready:
			return true
		default:
			return false
		}
	}, m.cfg.Node+"'s wills bucket")
	mqtttest.Eventually(t, 45*time.Second, m.ready, m.cfg.Node+" ready")
}

// testWill is a 5.0 will with everything a will carries.
func testWill(key, payload string) *broker.StoredSession {
	props := &packet.Properties{ContentType: "text/plain", UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}}
	props.Set(packet.PropContentType)
	return &broker.StoredSession{
		ClientID: key, Version: packet.V5, ExpiryInterval: 300, WillDelay: 7,
		Will: &broker.StoredMessage{Topic: "dev/" + payload + "/lwt", Payload: []byte(payload), QoS: 1, Retain: true,
			Properties: props, Origin: key},
		Holder: &broker.StoredHolder{Tenant: "t", Username: "u-" + payload, Roles: []string{"DEVICE"}, Method: "password",
			Attrs: map[string]string{"site": "7"}},
	}
}

// bigWill is a will of key with a payload of size bytes.
func bigWill(key string, size int) *broker.StoredSession {
	rec := testWill(key, "big")
	rec.Will.Payload = make([]byte, size)
	return rec
}

// willClaim claims key on m.
func willClaim(t *testing.T, m willMember, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for range 5 { // a JetStream timeout while an asset elects a leader
		if err = m.Claim(ctx, key); err == nil {
			return
		}
		t.Logf("claim of %q on %s: %v", key, m.cfg.Node, err)
	}
	t.Fatalf("claim of %q on %s: %v", key, m.cfg.Node, err)
}

// records returns the will record keys of node in m's view of the bucket.
func records(t *testing.T, m willMember, node string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kl, err := m.wills.kv.ListKeysFiltered(ctx, "w."+node+".*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range kl.Keys() {
		out = append(out, k)
	}
	return out
}

// sameWill fails unless got carries want's session and will.
func sameWill(t *testing.T, got, want *broker.StoredSession) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("published will %+v (will %+v, holder %+v), want %+v (will %+v, holder %+v)",
			got, got.Will, got.Holder, want, want.Will, want.Holder)
	}
}

// TestWillsOfDeadNode: three nodes; wills kept on n1, which dies
// abruptly (its server stops; nothing of it is flushed). The will of a
// client still connected there is published by exactly one survivor,
// whole (topic, payload, QoS, retain, properties, delay, holder); not the
// will of a client that connected again on n2 meanwhile (the owner
// record moved), nor one n1 dropped; n1's DropWill of a session n2 kept
// afterwards removes nothing of n2's; and of two reapers that read one
// record at once, one publishes it.
func TestWillsOfDeadNode(t *testing.T) {
	cfgs := configs(t, 3, 3)
	for i := range cfgs {
		cfgs[i].WillAfter = 2 * time.Second
	}
	ms := startWillNodes(t, cfgs)
	n1, n2, n3 := ms[0], ms[1], ms[2]

	dead, moved, dropped, shared := "t\x00dead", "t\x00moved", "t\x00dropped", "t\x00shared"
	for _, k := range []string{dead, moved, dropped, shared} {
		willClaim(t, n1, k)
		n1.KeepWill(k, testWill(k, strings.TrimPrefix(k, "t\x00")))
	}
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n1.WillCounters().Kept == 4 }, "n1's records written")
	n1.DropWill(dropped)
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n1.WillCounters().Dropped == 1 }, "n1's record removed")

	willClaim(t, n2, moved) // the client connected again on n2; n1 is not told to drop it
	willClaim(t, n2, shared)
	n2Will := testWill(shared, "shared-on-n2")
	n2.KeepWill(shared, n2Will)
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n2.WillCounters().Kept == 1 }, "n2's record written")
	n1.DropWill(shared) // the session moved to n2: n1 drops its own record
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n1.WillCounters().Dropped == 2 }, "n1's second drop")
	if got := records(t, n2, "n2"); len(got) != 1 || got[0] != willKey("n2", shared) {
		t.Fatalf("n2's records after n1's DropWill of the same session: %q, want n2's record of it", got)
	}
	if got := len(records(t, n2, "n1")); got != 2 {
		t.Fatalf("n1 has %d records, want 2 (dead, moved)", got)
	}

	// Two reapers that read one record at once: the compare-and-set
	// delete lets one publish it.
	race := "t\x00race"
	willClaim(t, n1, race)
	n1.KeepWill(race, testWill(race, "race"))
	mqtttest.Eventually(t, 20*time.Second, func() bool { return n1.WillCounters().Kept == 5 }, "n1's race record written")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var entries []jetstream.KeyValueEntry
	for _, m := range []willMember{n2, n3} { // both read before either deletes
		e, err := m.wills.kv.Get(ctx, willKey("n1", race))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	var wg sync.WaitGroup
	for i, m := range []willMember{n2, n3} {
		r := &reaper{n: m.Node, host: m.host, peers: map[string]*peerState{}}
		e := entries[i]
		wg.Go(func() {
			if err := r.reapEntry(ctx, e, "n1", n1.wills.life, false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := len(n2.host.orphans(race)) + len(n3.host.orphans(race)); got != 1 {
		t.Fatalf("a record two reapers read at once was published %d times, want once", got)
	}

	start := time.Now()
	n1.srv.Shutdown() // abrupt: no DropWill, no flush, no release
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		// each reaped its own previous life (none) at start, then n1
		return n2.WillCounters().NodesReaped >= 2 && n3.WillCounters().NodesReaped >= 2
	}, "both survivors done with n1")
	t.Logf("n1's wills reaped %v after its stop", time.Since(start).Round(time.Millisecond))

	got := append(n2.host.orphans(dead), n3.host.orphans(dead)...)
	if len(got) != 1 {
		t.Fatalf("the will of a client of the dead node was published %d times, want once", len(got))
	}
	sameWill(t, got[0], testWill(dead, "dead"))
	for _, k := range []string{moved, dropped, shared} {
		if o := append(n2.host.orphans(k), n3.host.orphans(k)...); len(o) != 0 {
			t.Fatalf("will of %q published %d times, want never", k, len(o))
		}
	}
	c2, c3 := n2.WillCounters(), n3.WillCounters()
	if c2.Reaped+c3.Reaped != 2 || c2.Skipped+c3.Skipped != 1 {
		t.Fatalf("survivors counted %d published, %d skipped; want 2 (race, dead) and 1 (moved)", c2.Reaped+c3.Reaped, c2.Skipped+c3.Skipped)
	}
	if left := records(t, n2, "n1"); len(left) != 0 {
		t.Fatalf("the dead node's records are still there: %q", left)
	}
	if got := records(t, n3, "n2"); len(got) != 1 {
		t.Fatalf("n2's record of a live session was reaped: %q", got)
	}
}

// TestWillsLeftoverAfterRestart: a node that stops without removing its
// records (its connections ended with it) publishes, at its next start,
// the wills of its previous life whose owner record still names it with
// the record's epoch, once, and deletes them all; a will whose session
// ended (owner record released) is not published. A third start
// publishes nothing.
func TestWillsLeftoverAfterRestart(t *testing.T) {
	cfg := configs(t, 1, 1)[0]
	first, err := startWillNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitWills(t, first)
	kept, released := "t\x00kept", "t\x00released"
	for _, k := range []string{kept, released} {
		willClaim(t, first, k)
		first.KeepWill(k, testWill(k, strings.TrimPrefix(k, "t\x00")))
	}
	mqtttest.Eventually(t, 20*time.Second, func() bool { return first.WillCounters().Kept == 2 }, "records written")
	first.Release(released)
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		_, err := first.kv.Get(context.Background(), ownerKey(released))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "the released owner record deleted")
	if len(first.host.orphans(kept)) != 0 {
		t.Fatal("a live node published its own client's will")
	}
	first.Close()

	second, err := startWillNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitWills(t, second)
	if second.wills.life != first.wills.life+1 {
		t.Fatalf("life %d after %d", second.wills.life, first.wills.life)
	}
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		c := second.WillCounters()
		return c.Reaped+c.Skipped == 2
	}, "the leftovers reaped")
	got := second.host.orphans(kept)
	if len(got) != 1 {
		t.Fatalf("leftover will published %d times, want once", len(got))
	}
	sameWill(t, got[0], testWill(kept, "kept"))
	if o := second.host.orphans(released); len(o) != 0 {
		t.Fatalf("the will of an ended session was published %d times", len(o))
	}
	if left := records(t, second, cfg.Node); len(left) != 0 {
		t.Fatalf("leftover records not deleted: %q", left)
	}
	second.Close()

	third, err := startWillNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	waitWills(t, third)
	mqtttest.Eventually(t, 20*time.Second, func() bool { return third.WillCounters().NodesReaped == 1 }, "the third start's reaping")
	if third.wills.life != first.wills.life+2 {
		t.Fatalf("third life %d after %d", third.wills.life, first.wills.life)
	}
	if c := third.WillCounters(); c.Reaped != 0 || c.Skipped != 0 || len(third.host.orphan) != 0 {
		t.Fatalf("a third start reaped again: %+v", c)
	}
}

// TestWillQueueBound: the records waiting to be written are bounded in
// bytes; past it a KeepWill is counted and not queued, and an earlier
// record of its session still waiting becomes a removal (no stale will
// is kept). Later calls of one session replace what waits for it.
func TestWillQueueBound(t *testing.T) {
	n := &Node{}
	n.wills.init()
	n.mu.held = map[string]uint64{}
	n.log = testLogger(t)
	var refused string
	for i := 0; ; i++ {
		key := "t\x00dev" + strings.Repeat("0", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		n.mu.held[key] = 1
		n.KeepWill(key, bigWill(key, 1<<20))
		if n.WillCounters().Unqueued > 0 {
			refused = key
			break
		}
		if i > 200 {
			t.Fatal("no bound on the waiting records")
		}
	}
	n.wills.mu.Lock()
	bytes, waiting := n.wills.mu.bytes, len(n.wills.mu.pending)
	val, queued := n.wills.mu.pending[refused]
	n.wills.mu.Unlock()
	if bytes > willQueueBytes {
		t.Fatalf("%d bytes waiting, bound %d", bytes, willQueueBytes)
	}
	if waiting < 60 {
		t.Fatalf("refused after %d records of 1 MiB, bound %d", waiting, willQueueBytes)
	}
	if queued {
		t.Fatalf("the refused will's session, never written, has %d bytes waiting, want nothing", len(val))
	}

	// A waiting record of a session that keeps a new, larger will over
	// the bound becomes a removal.
	var some string
	n.wills.mu.Lock()
	for k, v := range n.wills.mu.pending {
		if v != nil {
			some = k
			break
		}
	}
	n.wills.mu.Unlock()
	n.KeepWill(some, bigWill(some, 2<<20))
	n.wills.mu.Lock()
	val = n.wills.mu.pending[some]
	n.wills.mu.Unlock()
	if val != nil || n.WillCounters().Unqueued != 2 {
		t.Fatalf("a refused KeepWill left %d bytes waiting for its session (unqueued %d)", len(val), n.WillCounters().Unqueued)
	}

	// A small will of the same session is taken again, replacing the
	// removal in place: the queue holds one entry per session.
	n.KeepWill(some, testWill(some, "small"))
	n.wills.mu.Lock()
	val = n.wills.mu.pending[some]
	entries := len(n.wills.mu.order) - n.wills.mu.head
	n.wills.mu.Unlock()
	if val == nil || entries != waiting {
		t.Fatalf("after a new will: %d bytes waiting for the session, %d entries (want %d)", len(val), entries, waiting)
	}
	// A session not held (taken over meanwhile) keeps nothing; a
	// DropWill of a session never kept queues nothing; one of a session
	// whose record was written queues its removal.
	n.KeepWill("t\x00unheld", testWill("t\x00unheld", "x"))
	n.DropWill("t\x00never")
	n.wills.mu.Lock()
	n.wills.mu.revs["t\x00written"] = 7
	n.wills.mu.Unlock()
	n.DropWill("t\x00written")
	n.wills.mu.Lock()
	_, unheld := n.wills.mu.pending["t\x00unheld"]
	_, never := n.wills.mu.pending["t\x00never"]
	rm, written := n.wills.mu.pending["t\x00written"]
	n.wills.mu.Unlock()
	if n.WillCounters().Unheld != 1 || unheld || never {
		t.Fatalf("unheld %d, queued for the unheld session %v, for a session never kept %v", n.WillCounters().Unheld, unheld, never)
	}
	if !written || rm != nil {
		t.Fatal("the DropWill of a written record was not queued as a removal")
	}
}

// TestWillRecordRoundTrip: a record decodes to what was encoded, for each
// shape of will.
func TestWillRecordRoundTrip(t *testing.T) {
	full := testWill("t\x00full", "full")
	full.Will.Expiry = time.Unix(0, 1765100000123456789)
	v3 := &broker.StoredSession{ClientID: "legacy", Version: packet.V311, ExpiryInterval: broker.NoExpiry,
		Will: &broker.StoredMessage{Topic: "a/b", Payload: nil}}
	v31 := &broker.StoredSession{ClientID: "x", Version: packet.V31,
		Will: &broker.StoredMessage{Topic: "a", Payload: []byte{0, 1, 2}, QoS: 2}, Holder: &broker.StoredHolder{}}
	for _, tc := range []struct {
		name string
		rec  *broker.StoredSession
	}{{"full 5.0", full}, {"3.1.1 no holder", v3}, {"3.1 empty holder", v31}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := appendWill(nil, 3, 9, tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			setWillLife(b, 4)
			wr, err := decodeWill(b)
			if err != nil {
				t.Fatal(err)
			}
			if wr.life != 4 || wr.epoch != 9 {
				t.Fatalf("life %d epoch %d, want 4 and 9", wr.life, wr.epoch)
			}
			sameWill(t, wr.rec, tc.rec)
			for i := range b { // every truncation is refused
				if _, err := decodeWill(b[:i]); err == nil {
					t.Fatalf("a record cut to %d of %d bytes decoded", i, len(b))
				}
			}
		})
	}
}

// FuzzDecodeWill: the will record decoder never panics, and what it
// accepts encodes back to a record that decodes the same.
func FuzzDecodeWill(f *testing.F) {
	for _, rec := range []*broker.StoredSession{testWill("t\x00a", "a"),
		{ClientID: "b", Version: packet.V311, Will: &broker.StoredMessage{Topic: "x"}}} {
		b, err := appendWill(nil, 1, 2, rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{willVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		wr, err := decodeWill(b)
		if err != nil {
			return
		}
		again, err := appendWill(nil, wr.life, wr.epoch, wr.rec)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		wr2, err := decodeWill(again)
		if err != nil {
			t.Fatalf("a re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(wr, wr2) && !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the record: %+v / %+v", wr.rec, wr2.rec)
		}
	})
}

// TestReaperDeath: a node is taken for dead only when no route to it is
// up, and then at once when the meta group reports it offline, else once
// no route has been up for WillAfter.
func TestReaperDeath(t *testing.T) {
	n := &Node{cfg: Config{WillAfter: time.Minute}}
	now := time.Now()
	for _, tc := range []struct {
		name    string
		p       *peerState
		offline bool
		dead    bool
	}{
		{"unknown", nil, false, false},
		{"route up", &peerState{up: true, lastUp: now}, false, false},
		{"route up, meta says offline", &peerState{up: true, lastUp: now}, true, false},
		{"no route, meta says offline", &peerState{lastUp: now}, true, true},
		{"no route for less than WillAfter", &peerState{lastUp: now.Add(-59 * time.Second)}, false, false},
		{"no route for WillAfter", &peerState{lastUp: now.Add(-61 * time.Second)}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &reaper{n: n, peers: map[string]*peerState{}, offline: map[string]bool{"x": tc.offline}}
			if tc.p != nil {
				r.peers["x"] = tc.p
			}
			if got := r.dead("x"); got != tc.dead {
				t.Fatalf("dead = %v, want %v", got, tc.dead)
			}
		})
	}
}
