package interop_test

import (
	"fmt"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// Bounds per tenant: the queue bound of a tenant (limits.tenant_queue_*)
// is the tenant's own; an attacker filling its tenant's bound drops its
// own messages, never tenant A's.

const tenantQueue = 10

func boundsScenarios() []scenario {
	return []scenario{
		{name: "bounds/tenant-queue-full", stores: []string{"mem", "disk"},
			tweak: func(o *broker.Options) { o.TenantQueueMessages = tenantQueue },
			run:   boundsTenantQueue},
	}
}

// boundsTenantQueue: the attacker's offline sessions hold its tenant's
// whole queue bound and more is published to them; then A's offline
// session gets every message published to it.
func boundsTenantQueue(t *testing.T, w *world, atk string) {
	for _, who := range []string{atk, "A"} {
		c, _ := w.connect(who, "meter", freshPersist)
		c.mustSub(tenantOf(who) + "/read/#")
		c.bye(tenantOf(who))
	}
	gwB, _ := w.connect("gwB", "gw", cleanSess)
	for i := range 2 * tenantQueue {
		// Past the bound, a 5.0 publisher whose message no queue took is
		// told so: PUBACK 0x97 quota exceeded [MQTT-3.4.2-1].
		m := &packet.Publish{Topic: "B/read/m1", QoS: 1, Payload: []byte(fmt.Sprintf("b:%d", i))}
		if res := gwB.tryPub(m); res != "ok" && res != "refused "+packet.QuotaExceeded.String() {
			t.Fatalf("gwB: publish %s: %s", m.Topic, res)
		}
	}
	w.waitQueued("B", "meter", tenantQueue)
	if st, _ := w.b.ClientStatsIn("B", "meter"); st.Dropped == 0 {
		t.Fatalf("%s's session dropped nothing: the tenant bound was not reached (%+v)", atk, st)
	}
	gwA, _ := w.connect("gwA", "gw", cleanSess)
	var want []string
	for i := range tenantQueue {
		p := fmt.Sprintf("secret:%d", i)
		gwA.pub("A/read/m1", p, 1, false)
		want = append(want, p)
	}
	a, ack := w.connect("A", "meter", persistSess)
	if !ack.SessionPresent {
		t.Fatal("A's session is gone")
	}
	gwA.pub("A/read/ctl", "ctl:a", 1, false)
	hasPayloads(t, "A", a.until("ctl:a"), want...)
	if st, _ := w.b.ClientStatsIn("A", "meter"); st.Dropped != 0 {
		t.Errorf("CROSSING: A's session dropped %d messages while %s filled its own tenant's bound", st.Dropped, atk)
	}
}
