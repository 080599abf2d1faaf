package broker_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// dropLines returns the messages of the WARN records that report drops.
func (h *logCapture) dropLines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level == slog.LevelWarn && strings.Contains(r.Message, "dropped") {
			out = append(out, r.Message)
		}
	}
	return out
}

// offlineSubscribers connects each id (in tenant, as tenantAuth names it)
// with a persistent session subscribed to filter at QoS 1, then leaves it
// offline.
func offlineSubscribers(t *testing.T, b *broker.Broker, addr, tenant, filter string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		c := mqtttest.Dial(t, addr, packet.V311)
		con := &packet.Connect{ClientID: id, KeepAlive: 60}
		if tenant != "" {
			con.UsernameFlag, con.Username = true, tenant
		}
		c.Connect(con)
		c.Subscribe(1, packet.Subscription{Filter: filter, QoS: 1})
		c.Send(&packet.Disconnect{})
		c.ExpectClosed()
		// The client sees the close before the broker has detached the
		// session; a message routed meanwhile would find it online.
		mqtttest.Eventually(t, 5*time.Second, func() bool {
			st, ok := b.ClientStatsIn(tenant, id)
			return ok && !st.Online
		}, id+"'s session to go offline")
	}
}

// publishN publishes n messages on topic at qos from a clean 3.1.1
// client, in one write, and returns once the broker handled them all.
func publishN(t *testing.T, addr, topic string, qos byte, n int) {
	t.Helper()
	pub, _ := mqtttest.Connect(t, addr, packet.V311, "drops-pub", true)
	var buf []byte
	for i := range n {
		buf, _ = (&packet.Publish{Topic: topic, QoS: qos, PacketID: uint16(i + 1), Payload: []byte("m")}).Append(buf, packet.V311)
	}
	buf, _ = (&packet.Pingreq{}).Append(buf, packet.V311)
	pub.SendRaw(buf)
	for { // the acknowledgements, then the PINGRESP that follows them
		if pub.Expect().Type() == packet.PINGRESP {
			return
		}
	}
}

// TestQueueDropsCountedPerClientAndTenant: every message a queue bound
// drops is counted for its client and its tenant, and QoS 0 messages not
// kept for offline sessions apart (DESIGN.md section 3).
func TestQueueDropsCountedPerClientAndTenant(t *testing.T) {
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: tenantAuth{}, QueueMessages: 3})
	offlineSubscribers(t, b, addr, "A", "q", "a1", "a2")
	offlineSubscribers(t, b, addr, "B", "q", "b1")
	publishN(t, addr, "q", 1, 5) // 3 queued and 2 dropped for each session
	publishN(t, addr, "q", 0, 1) // not kept offline
	for _, id := range []string{"a1", "a2", "b1"} {
		st, ok := b.ClientStatsIn(strings.ToUpper(id[:1]), id)
		if !ok || st.DroppedByLimit != 2 || st.DroppedQoS0 != 1 || st.Dropped != 3 || st.Queued != 3 {
			t.Fatalf("%s: %+v, want 2 dropped by the queue bound, 1 QoS 0 offline, 3 queued", id, st)
		}
		if want := strings.ToUpper(id[:1]); st.Tenant != want {
			t.Fatalf("%s: tenant %q, want %s", id, st.Tenant, want)
		}
	}
	for tenant, want := range map[string]uint64{"A": 4, "B": 2} {
		st, ok := b.TenantStats(tenant)
		if !ok || st.Dropped != want || st.DroppedQoS0 != want/2 {
			t.Fatalf("tenant %s: %+v, want %d dropped by queue bounds and %d QoS 0", tenant, st, want, want/2)
		}
	}
	if _, ok := b.TenantStats("C"); ok {
		t.Fatal("stats for a tenant nobody connected as")
	}
	if s := b.Stats(); s.MessagesDropped != 9 {
		t.Fatalf("broker counts %d drops, want 9", s.MessagesDropped)
	}
}

// TestQueueDropsLoggedAggregated: drops are reported at WARN once per
// interval per client, with the count of that interval, the bound and the
// policy; many dropping clients give a bounded number of lines.
func TestQueueDropsLoggedAggregated(t *testing.T) {
	h := &logCapture{}
	const interval = 500 * time.Millisecond
	b, addr := mqtttest.StartBroker(t, broker.Options{Logger: slog.New(h), Authenticator: tenantAuth{},
		QueueMessages: 2, DropLogInterval: interval})
	offlineSubscribers(t, b, addr, "T", "q", "drop-sub")

	publishN(t, addr, "q", 1, 10) // 8 dropped, one line after the interval
	mqtttest.Eventually(t, 5*time.Second, func() bool { return len(h.dropLines()) > 0 }, "the drops reported")
	lines := h.dropLines()
	want := "client drop-sub (tenant T): dropped 8 messages in "
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], ", queue full (2 messages), policy drop-new") {
		t.Fatalf("drop report %q, want one line %q...", lines, want)
	}

	publishN(t, addr, "q", 1, 3) // 3 more: a new line counts those alone
	mqtttest.Eventually(t, 5*time.Second, func() bool { return len(h.dropLines()) > 1 }, "the second report")
	if lines := h.dropLines(); len(lines) != 2 || !strings.HasPrefix(lines[1], "client drop-sub (tenant T): dropped 3 messages in ") {
		t.Fatalf("second report %q, want the 3 new drops", lines[1:])
	}

	// 25 clients dropping at once: 20 lines name the clients, one sums up
	// the rest.
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("many-%02d", i))
	}
	offlineSubscribers(t, b, addr, "T", "many", ids...)
	publishN(t, addr, "many", 1, 4) // 2 dropped for each
	mqtttest.Eventually(t, 5*time.Second, func() bool { return len(h.dropLines()) >= 2+21 }, "the report of 25 clients")
	time.Sleep(interval) // one report for them all: nothing more may follow
	lines = h.dropLines()[2:]
	if len(lines) != 21 || !strings.HasPrefix(lines[20], "5 more clients dropped 10 messages in ") {
		t.Fatalf("report of 25 clients: %d lines, last %q; want 20 clients named and one line for 5 more", len(lines), lines[len(lines)-1])
	}
}

// TestQuotaExceededWhenNoQueueTookTheMessage: a 5.0 publisher whose QoS
// 1/2 message every matching queue refused gets PUBACK/PUBREC 0x97 (5.0
// section 3.4.2.1 and 3.5.2.1) [MQTT-3.4.2-1] [MQTT-3.5.2-1]; the QoS 2
// exchange ends there [MQTT-4.3.3-4], so the same packet id is a new
// message next time. A 3.1.1 publisher gets its plain acknowledgement.
func TestQuotaExceededWhenNoQueueTookTheMessage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v     packet.Version
		qos   byte
		store bool
	}{
		{"5.0 QoS 1", packet.V5, 1, false},
		{"5.0 QoS 2", packet.V5, 2, false},
		{"5.0 QoS 1 stored", packet.V5, 1, true},
		{"5.0 QoS 2 stored", packet.V5, 2, true},
		{"3.1.1 QoS 1", packet.V311, 1, false},
		{"3.1.1 QoS 2 stored", packet.V311, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := broker.Options{QueueMessages: 1}
			if tc.store {
				o.Store = memstore.New()
			}
			b, addr := mqtttest.StartBroker(t, o)
			offlineSubscribers(t, b, addr, "", "full/#", "full-sub")
			offlineSubscribers(t, b, addr, "", "full/roomy", "other-sub")
			pub, _ := mqtttest.Connect(t, addr, tc.v, "quota-pub", false)
			send := func(topic string, pid uint16) packet.ReasonCode {
				t.Helper()
				pub.Send(&packet.Publish{Topic: topic, QoS: tc.qos, PacketID: pid, Payload: []byte("m")})
				switch ack := pub.Expect().(type) {
				case *packet.Puback:
					if tc.qos == 1 && ack.PacketID == pid {
						return ack.ReasonCode
					}
				case *packet.Pubrec:
					if tc.qos == 2 && ack.PacketID == pid {
						if !ack.ReasonCode.IsError() {
							pub.Send(&packet.Pubrel{PacketID: pid})
							pub.Expect() // PUBCOMP
						}
						return ack.ReasonCode
					}
				}
				t.Fatalf("no acknowledgement of packet %d", pid)
				return 0
			}
			wantFull := packet.QuotaExceeded
			if tc.v != packet.V5 {
				wantFull = packet.Success
			}
			for _, step := range []struct {
				topic string
				pid   uint16
				want  packet.ReasonCode
			}{
				{"full/x", 1, packet.Success},       // full-sub's queue takes it
				{"full/x", 2, wantFull},             // and has no room for more
				{"full/x", 2, wantFull},             // the same id again: a new message, refused again
				{"full/roomy", 3, packet.Success},   // other-sub took it
				{"elsewhere", 4, wantNoMatch(tc.v)}, // nobody matched
			} {
				if got := send(step.topic, step.pid); got != step.want {
					t.Fatalf("publish %d to %s: code %v, want %v", step.pid, step.topic, got, step.want)
				}
			}
		})
	}
}

func wantNoMatch(v packet.Version) packet.ReasonCode {
	if v == packet.V5 {
		return packet.NoMatchingSubscribers
	}
	return packet.Success
}

// TestBudgetDropsReportedPerClientAndTenant: messages the broker's memory
// budget drops are counted once, for the client and its tenant as for
// the broker's budget, and reported at WARN naming the budget.
func TestBudgetDropsReportedPerClientAndTenant(t *testing.T) {
	const budget, n, size = 64 << 10, 20, 8 << 10
	h := &logCapture{}
	b, addr := mqtttest.StartBroker(t, broker.Options{Logger: slog.New(h), Authenticator: tenantAuth{},
		MemoryBudget: budget, DropLogInterval: 200 * time.Millisecond})
	offlineSubscribers(t, b, addr, "T", "big", "budget-sub")

	pub, _ := mqtttest.Connect(t, addr, packet.V311, "budget-pub", true)
	var buf []byte
	for i := range n { // 160 KiB for a budget of 64 KiB
		buf, _ = (&packet.Publish{Topic: "big", QoS: 1, PacketID: uint16(i + 1), Payload: make([]byte, size)}).Append(buf, packet.V311)
	}
	buf, _ = (&packet.Pingreq{}).Append(buf, packet.V311)
	pub.SendRaw(buf)
	for pub.Expect().Type() != packet.PINGRESP {
	}

	st, ok := b.ClientStatsIn("T", "budget-sub")
	bs := b.Stats()
	if !ok || st.DroppedByLimit == 0 || st.Queued+int(st.DroppedByLimit) != n {
		t.Fatalf("client %+v: want some of %d messages dropped by the budget, the rest queued", st, n)
	}
	if bs.BudgetDrops != st.DroppedByLimit || bs.MessagesDropped != st.DroppedByLimit {
		t.Fatalf("broker: %d budget drops, %d drops in all; client %d: want the same count once in each", bs.BudgetDrops, bs.MessagesDropped, st.DroppedByLimit)
	}
	if ts, ok := b.TenantStats("T"); !ok || ts.Dropped != st.DroppedByLimit {
		t.Fatalf("tenant T: %+v, want %d dropped", ts, st.DroppedByLimit)
	}
	// The budget's own line (memory budget reached) is written too; the
	// client's report is the one naming it.
	want := fmt.Sprintf("client budget-sub (tenant T): dropped %d messages in ", st.DroppedByLimit)
	report := func() string {
		for _, l := range h.dropLines() {
			if strings.HasPrefix(l, "client ") {
				return l
			}
		}
		return ""
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return report() != "" }, "the drops reported")
	if line := report(); !strings.HasPrefix(line, want) || !strings.HasSuffix(line, ", memory budget (65,536 bytes), policy drop-new") {
		t.Fatalf("drop report %q, want %q... memory budget (65,536 bytes), policy drop-new", line, want)
	}
}

// TestRestoredSessionCountsForItsTenant: a session restored from the store
// counts its drops for its tenant, known from its session key, before its
// client connects again.
func TestRestoredSessionCountsForItsTenant(t *testing.T) {
	h := &logCapture{}
	r, addr := newRestartable(t, broker.Options{Logger: slog.New(h), Authenticator: tenantAuth{},
		QueueMessages: 2, DropLogInterval: 200 * time.Millisecond})
	offlineSubscribers(t, r.b, addr, "R", "q", "r1")
	addr = r.restart()
	if _, ok := r.b.TenantStats("R"); !ok {
		t.Fatal("tenant R unknown after the restore")
	}
	publishN(t, addr, "q", 1, 5) // 2 queued, 3 dropped
	// With a store the PUBACK follows the durable pipeline's commit and
	// may reach the publisher before the deliveries are queued: poll.
	var st broker.ClientStats
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		st, _ = r.b.ClientStatsIn("R", "r1")
		return uint64(st.Queued)+st.Dropped == 5
	}, "the 5 messages routed to r1")
	if st.Online || st.DroppedByLimit != 3 || st.Tenant != "R" {
		t.Fatalf("restored r1: %+v, want offline, 3 dropped, tenant R", st)
	}
	if ts, _ := r.b.TenantStats("R"); ts.Dropped != 3 {
		t.Fatalf("tenant R: %+v, want the restored session's 3 drops", ts)
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return len(h.dropLines()) > 0 }, "the drops reported")
	if lines := h.dropLines(); !strings.HasPrefix(lines[len(lines)-1], "client r1 (tenant R): dropped 3 messages in ") {
		t.Fatalf("drop report %q, want it to name client r1 of tenant R", lines)
	}
}
