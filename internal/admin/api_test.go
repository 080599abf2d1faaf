package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

var none = cred{}

// expiry returns CONNECT properties with a session expiry interval.
func expiry(seconds uint32) packet.Properties {
	var p packet.Properties
	p.Set(packet.PropSessionExpiryInterval)
	p.SessionExpiryInterval = seconds
	return p
}

// TestClientsListDetailKick lists connected clients, reads one's detail
// with its subscriptions, and kicks it: a 5.0 client gets DISCONNECT 0x98
// Administrative action [MQTT-3.14.2-1], a 3.1.1 client is closed, and its
// will is published.
func TestClientsListDetailKick(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			e := start(t, broker.Options{}, admin.Options{}, "")
			watcher, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "watcher", true)
			watcher.Subscribe(1, packet.Subscription{Filter: "wills/#", QoS: 1})
			c := mqtttest.Dial(t, e.mqtt, v)
			if ack := c.Connect(&packet.Connect{ClientID: "dev/1 x", CleanStart: true, KeepAlive: 30,
				Will: &packet.Will{Topic: "wills/dev1", Payload: []byte("gone")}}); ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %v", ack.ReasonCode)
			}
			c.Subscribe(1, packet.Subscription{Filter: "cmd/#", QoS: 1}, packet.Subscription{Filter: "$share/g/jobs/+", QoS: 0})

			var page api.Page[api.Session]
			e.must("GET", "/api/v1/clients", none, "", http.StatusOK, &page)
			var ids []string
			for _, s := range page.Items {
				ids = append(ids, s.ClientID)
			}
			if !slices.Equal(ids, []string{"dev/1 x", "watcher"}) || page.NextCursor != "" {
				t.Fatalf("clients %v (cursor %q), want [dev/1 x watcher]", ids, page.NextCursor)
			}

			var d api.Session
			e.must("GET", "/api/v1/clients/"+esc("dev/1 x"), none, "", http.StatusOK, &d)
			if !d.Online || d.ProtocolVersion != v.String() || d.KeepAliveSeconds != 30 || d.Subscriptions != 2 ||
				len(d.SubscriptionList) != 2 || d.SubscriptionList[0].Filter != "$share/g/jobs/+" ||
				d.SubscriptionList[1].Filter != "cmd/#" || d.SubscriptionList[1].QoS != 1 || d.RemoteAddr == "" {
				t.Fatalf("detail %+v", d)
			}

			e.must("DELETE", "/api/v1/clients/"+esc("dev/1 x"), none, "", http.StatusOK, nil)
			got := c.ExpectClosed()
			if v == packet.V5 {
				if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.AdministrativeAction {
					t.Fatalf("5.0 client got %v before the close, want DISCONNECT 0x98", got)
				}
			} else if len(got) != 0 {
				t.Fatalf("3.1.1 client got %v before the close, want nothing", got)
			}
			if p := watcher.ExpectPublish(); p.Topic != "wills/dev1" {
				t.Fatalf("watcher got %q, want the kicked client's will", p.Topic)
			}
			mqtttest.Eventually(t, 5*time.Second, func() bool {
				status, _ := e.do("GET", "/api/v1/clients/"+esc("dev/1 x"), none, "")
				return status == http.StatusNotFound
			}, "the kicked client to be gone")
			e.must("DELETE", "/api/v1/clients/nobody", none, "", http.StatusNotFound, nil)
		})
	}
}

// TestSessionsOfflineAndDelete: an offline session is listed with its
// queue and its expiry; deleting it removes it from memory and from the
// store, so that the client comes back to no session.
func TestSessionsOfflineAndDelete(t *testing.T) {
	st := memstore.New()
	e := start(t, broker.Options{Store: st}, admin.Options{}, "")
	c := mqtttest.Dial(t, e.mqtt, packet.V5)
	ack := c.Connect(&packet.Connect{ClientID: "meter", CleanStart: true, KeepAlive: 60,
		Properties: expiry(3600)})
	if ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	c.Subscribe(1, packet.Subscription{Filter: "m/#", QoS: 1})
	c.Send(&packet.Disconnect{})
	c.ExpectClosed()
	// The client sees the close before the broker has detached the
	// session: wait until it is offline.
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		var p api.Page[api.Session]
		e.must("GET", "/api/v1/sessions?client_id=meter", none, "", http.StatusOK, &p)
		return len(p.Items) == 1 && !p.Items[0].Online
	}, "meter's session to go offline")
	pub, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "pub", true)
	for i := range 3 {
		pub.Send(&packet.Publish{Topic: "m/x", QoS: 1, PacketID: uint16(i + 1), Payload: []byte("r")})
		pub.Expect()
	}

	var page api.Page[api.Session]
	e.must("GET", "/api/v1/sessions?client_id=met", none, "", http.StatusOK, &page)
	if len(page.Items) != 1 {
		t.Fatalf("sessions %+v, want meter", page.Items)
	}
	s := page.Items[0]
	if s.ClientID != "meter" || s.Online || !s.Persistent || s.Queued != 3 || s.Subscriptions != 1 || s.ExpiresAt == nil ||
		s.ExpiresAt.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("offline session %+v", s)
	}
	e.must("GET", "/api/v1/clients/meter", none, "", http.StatusNotFound, nil) // not connected

	e.must("DELETE", "/api/v1/sessions/meter", none, "", http.StatusOK, nil)
	e.must("GET", "/api/v1/sessions/meter", none, "", http.StatusNotFound, nil)
	stored, err := broker.LoadAll(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range stored.Sessions {
		if ss.ClientID == "meter" {
			t.Fatal("the deleted session is still in the store")
		}
	}
	c2 := mqtttest.Dial(t, e.mqtt, packet.V5)
	if ack := c2.Connect(&packet.Connect{ClientID: "meter", KeepAlive: 60,
		Properties: expiry(60)}); ack.SessionPresent {
		t.Fatal("session present after the session was deleted")
	}
	c2.ExpectNone(200 * time.Millisecond) // nothing of the old queue
	e.must("DELETE", "/api/v1/sessions/nobody", none, "", http.StatusNotFound, nil)
}

// TestDeleteOnlineSession: deleting the session of a connected client
// kicks it (0x98) and discards its persistent session.
func TestDeleteOnlineSession(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	c, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "keeper", false)
	c.Subscribe(1, packet.Subscription{Filter: "k", QoS: 1})
	e.must("DELETE", "/api/v1/sessions/keeper", none, "", http.StatusOK, nil)
	c.ExpectClosed()
	e.must("GET", "/api/v1/sessions/keeper", none, "", http.StatusNotFound, nil)
	if _, ack := mqtttest.Connect(t, e.mqtt, packet.V311, "keeper", false); ack.SessionPresent {
		t.Fatal("session present after the session was deleted")
	}
}

// TestSubscriptionsByFilterAndTopic lists subscriptions by exact filter
// and by the topic they match, and pages through them.
func TestSubscriptionsByFilterAndTopic(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	for i, f := range []string{"a/+/c", "a/#", "b/c", "$share/g/a/b/c"} {
		c, _ := mqtttest.Connect(t, e.mqtt, packet.V311, fmt.Sprintf("s%d", i), true)
		c.Subscribe(1, packet.Subscription{Filter: f, QoS: 1})
	}
	names := func(p api.Page[api.Subscription]) string {
		var out []string
		for _, s := range p.Items {
			out = append(out, s.ClientID+":"+s.Filter)
		}
		return strings.Join(out, " ")
	}
	var p api.Page[api.Subscription]
	e.must("GET", "/api/v1/subscriptions?topic=a/b/c", none, "", http.StatusOK, &p)
	if got := names(p); got != "s0:a/+/c s1:a/# s3:$share/g/a/b/c" {
		t.Fatalf("matching a/b/c: %s", got)
	}
	p = api.Page[api.Subscription]{}
	e.must("GET", "/api/v1/subscriptions?filter=b/c", none, "", http.StatusOK, &p)
	if got := names(p); got != "s2:b/c" {
		t.Fatalf("filter b/c: %s", got)
	}
	var all []string
	cursor := ""
	for range 10 {
		p = api.Page[api.Subscription]{}
		e.must("GET", "/api/v1/subscriptions?limit=1&cursor="+cursor, none, "", http.StatusOK, &p)
		all = append(all, names(p))
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if got := strings.Join(all, " "); got != "s0:a/+/c s1:a/# s2:b/c s3:$share/g/a/b/c" {
		t.Fatalf("pages: %q", got)
	}
}

// TestRetainedBrowseReadDelete browses retained messages by filter, reads
// one, and deletes it from memory and from the store.
func TestRetainedBrowseReadDelete(t *testing.T) {
	st := memstore.New()
	e := start(t, broker.Options{Store: st}, admin.Options{}, "")
	pub, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "pub", true)
	for i, tp := range []string{"r/a", "r/b", "s/c", "r/bin"} {
		payload := []byte("v-" + tp)
		if tp == "r/bin" {
			payload = []byte{0xff, 0x00}
		}
		pub.Send(&packet.Publish{Topic: tp, QoS: 1, PacketID: uint16(i + 1), Retain: true, Payload: payload})
		pub.Expect()
	}
	var p api.Page[api.Retained]
	e.must("GET", "/api/v1/retained?filter="+esc("r/#")+"&limit=2", none, "", http.StatusOK, &p)
	if len(p.Items) != 2 || p.Items[0].Topic != "r/a" || p.Items[1].Topic != "r/b" || p.NextCursor == "" {
		t.Fatalf("first page %+v", p)
	}
	cursor := p.NextCursor
	p = api.Page[api.Retained]{}
	e.must("GET", "/api/v1/retained?filter="+esc("r/#")+"&limit=2&cursor="+cursor, none, "", http.StatusOK, &p)
	if len(p.Items) != 1 || p.Items[0].Topic != "r/bin" || p.Items[0].PayloadEncoding != api.EncodingBase64 ||
		p.Items[0].Payload != "/wA=" || p.NextCursor != "" {
		t.Fatalf("second page %+v", p)
	}
	var one api.Retained
	e.must("GET", "/api/v1/retained/"+esc("r/a"), none, "", http.StatusOK, &one)
	if one.Payload != "v-r/a" || one.PayloadEncoding != api.EncodingUTF8 || one.QoS != 1 {
		t.Fatalf("r/a: %+v", one)
	}
	e.must("DELETE", "/api/v1/retained/"+esc("r/a"), none, "", http.StatusOK, nil)
	e.must("GET", "/api/v1/retained/"+esc("r/a"), none, "", http.StatusNotFound, nil)
	e.must("DELETE", "/api/v1/retained/"+esc("r/a"), none, "", http.StatusNotFound, nil)
	stored, err := broker.LoadAll(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range stored.Retained {
		if m.Topic == "r/a" {
			t.Fatal("the deleted retained message is still in the store")
		}
	}
	sub, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "r/a"})
	sub.ExpectNone(200 * time.Millisecond)
	e.must("GET", "/api/v1/retained?filter="+esc("r/#/x"), none, "", http.StatusBadRequest, nil)
}

// TestPublish: an administrative publish reaches a subscriber (with its
// properties, and retained when asked), and the Authorizer refuses it
// like a client's.
func TestPublish(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	sub := mqtttest.Dial(t, e.mqtt, packet.V5)
	sub.Connect(&packet.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 60})
	sub.Subscribe(1, packet.Subscription{Filter: "cmd/#", QoS: 1})
	var res api.PublishResult
	e.must("POST", "/api/v1/publish", none,
		`{"topic":"cmd/reboot","payload":"now","qos":1,"content_type":"text/plain","user_properties":[{"key":"by","value":"ops"}]}`,
		http.StatusOK, &res)
	if res.Queued != 1 {
		t.Fatalf("queued for %d sessions, want 1", res.Queued)
	}
	p := sub.ExpectPublish()
	if p.Topic != "cmd/reboot" || string(p.Payload) != "now" || p.QoS != 1 || p.Properties.ContentType != "text/plain" ||
		len(p.Properties.UserProperties) != 1 || p.Properties.UserProperties[0].Value != "ops" {
		t.Fatalf("subscriber got %+v", p)
	}
	e.must("POST", "/api/v1/publish", none, `{"topic":"cmd/bin","payload":"AAE=","payload_encoding":"base64","retain":true}`, http.StatusOK, nil)
	if p := sub.ExpectPublish(); string(p.Payload) != "\x00\x01" {
		t.Fatalf("payload %q", p.Payload)
	}
	var one api.Retained
	e.must("GET", "/api/v1/retained/cmd/bin", none, "", http.StatusOK, &one)
	for _, bad := range []string{
		`{"topic":"cmd/#","payload":"x"}`,        // a wildcard in a topic name [MQTT-3.3.2-2]
		`{"topic":"$SYS/x","payload":"x"}`,       // the broker's own
		`{"topic":"a","qos":3}`,                  // no such QoS
		`{"topic":"a","payload_encoding":"rot"}`, // no such encoding
		`{"topic":"a","response_topic":"r/+"}`,   // [MQTT-3.3.2-14]
		`{"topic":"a","unknown":1}`,              // unknown field
		`{"topic":"a"} {"topic":"b"}`,            // two documents
		`{"topic":`,                              // truncated
	} {
		e.must("POST", "/api/v1/publish", none, bad, http.StatusBadRequest, nil)
	}
}

// refuser refuses every publish to deny/...
type refuser struct{ broker.AllowAll }

func (refuser) CanPublish(_ *broker.Identity, topic string, _ byte, _ bool) bool {
	return !strings.HasPrefix(topic, "deny/")
}

// TestPublishRefusedByAuthorizer: the Authorizer decides an
// administrative publish as it decides a client's; a refused one reaches
// nobody.
func TestPublishRefusedByAuthorizer(t *testing.T) {
	e := start(t, broker.Options{Authorizer: refuser{}}, admin.Options{}, "")
	sub, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "#"})
	e.must("POST", "/api/v1/publish", none, `{"topic":"deny/x","payload":"x"}`, http.StatusForbidden, nil)
	sub.ExpectNone(200 * time.Millisecond)
	e.must("POST", "/api/v1/publish", none, `{"topic":"allow/x","payload":"x"}`, http.StatusOK, nil)
	if p := sub.ExpectPublish(); p.Topic != "allow/x" {
		t.Fatalf("got %q", p.Topic)
	}
}

// TestStatsHealthReload: stats count what happened, the probes answer,
// and reload runs the configured function and reports its refusal.
func TestStatsHealthReload(t *testing.T) {
	var reloads int
	fail := false
	e := start(t, broker.Options{}, admin.Options{Reload: func(context.Context) error {
		reloads++
		if fail {
			return fmt.Errorf("bad file")
		}
		return nil
	}}, "")
	mqtttest.Connect(t, e.mqtt, packet.V311, "one", true)
	var st api.Stats
	e.must("GET", "/api/v1/stats", none, "", http.StatusOK, &st)
	if st.Clients != 1 || st.Sessions != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
	e.must("GET", "/healthz", none, "", http.StatusOK, nil)
	e.must("GET", "/readyz", none, "", http.StatusOK, nil)
	e.must("GET", "/metrics", none, "", http.StatusNotFound, nil) // no metrics handler given
	e.must("POST", "/api/v1/reload", none, "", http.StatusOK, nil)
	fail = true
	e.must("POST", "/api/v1/reload", none, "", http.StatusUnprocessableEntity, nil)
	if reloads != 2 {
		t.Fatalf("%d reloads, want 2", reloads)
	}
	if err := e.b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.must("GET", "/readyz", none, "", http.StatusServiceUnavailable, nil)
	e.must("GET", "/healthz", none, "", http.StatusOK, nil)
}

// TestMetricsHandlerMounted: the handler given as Options.Metrics serves
// /metrics.
func TestMetricsHandlerMounted(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "petrel_up 1\n") })
	e := start(t, broker.Options{}, admin.Options{Metrics: h}, "")
	if b := e.must("GET", "/metrics", none, "", http.StatusOK, nil); string(b) != "petrel_up 1\n" {
		t.Fatalf("metrics %q", b)
	}
}

// escAll percent-encodes every byte but letters, digits, '-', '_' and
// '~', as petrel ctl does: "/", "." and ".." stay inside one segment.
func escAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestOddClientIDs: a client id may be any string ("/", "..", "a//b",
// reserved URL characters); each is named by its path and kicked.
func TestOddClientIDs(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	for _, id := range []string{"/", "..", ".", "a//b", "?#%&+ é"} {
		c, _ := mqtttest.Connect(t, e.mqtt, packet.V5, id, true)
		var d api.Session
		e.must("GET", "/api/v1/clients/"+escAll(id), none, "", http.StatusOK, &d)
		if d.ClientID != id {
			t.Fatalf("asked for %q, got %q", id, d.ClientID)
		}
		e.must("DELETE", "/api/v1/clients/"+escAll(id), none, "", http.StatusOK, nil)
		if got := c.ExpectClosed(); len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.AdministrativeAction {
			t.Fatalf("%q got %v", id, got)
		}
	}
}

// TestSubscriptionPagesAreBounded: one subscriptions request walks a
// bounded number of sessions; sessions without subscriptions make short
// (even empty) pages with a cursor, never one endless walk, and
// following the cursors finds everything.
func TestSubscriptionPagesAreBounded(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	for i := range 40 {
		c, _ := mqtttest.Connect(t, e.mqtt, packet.V311, fmt.Sprintf("a%02d", i), false)
		c.Send(&packet.Disconnect{})
		c.ExpectClosed()
	}
	z, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "z", true)
	z.Subscribe(1, packet.Subscription{Filter: "z/#"})
	var found []string
	cursor, requests, empty := "", 0, 0
	for requests < 100 {
		var p api.Page[api.Subscription]
		e.must("GET", "/api/v1/subscriptions?limit=1&cursor="+cursor, none, "", http.StatusOK, &p)
		requests++
		if len(p.Items) == 0 {
			empty++
		}
		for _, s := range p.Items {
			found = append(found, s.ClientID+":"+s.Filter)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if strings.Join(found, " ") != "z:z/#" {
		t.Fatalf("found %v", found)
	}
	if empty == 0 {
		t.Fatalf("%d requests, none of them a short page: the walk is not bounded", requests)
	}
}

// TestDeleteSessionSendsDelayedWill: deleting an offline session whose
// will waits out its Will Delay Interval ends the session, so the will is
// published now [MQTT-3.1.3-9].
func TestDeleteSessionSendsDelayedWill(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	watcher, _ := mqtttest.Connect(t, e.mqtt, packet.V311, "watcher", true)
	watcher.Subscribe(1, packet.Subscription{Filter: "wills/#"})
	c := mqtttest.Dial(t, e.mqtt, packet.V5)
	will := &packet.Will{Topic: "wills/meter", Payload: []byte("lost")}
	will.Properties.Set(packet.PropWillDelayInterval)
	will.Properties.WillDelayInterval = 3600
	if ack := c.Connect(&packet.Connect{ClientID: "meter", CleanStart: true, KeepAlive: 60, Will: will,
		Properties: expiry(3600)}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	c.Conn.Close() // an abnormal end: the will waits out its delay
	mqtttest.Eventually(t, 5*time.Second, func() bool {
		var s api.Session
		status, b := e.do("GET", "/api/v1/sessions/meter", none, "")
		return status == http.StatusOK && json.Unmarshal(b, &s) == nil && !s.Online
	}, "the session to go offline")
	watcher.ExpectNone(100 * time.Millisecond)
	e.must("DELETE", "/api/v1/sessions/meter", none, "", http.StatusOK, nil)
	if p := watcher.ExpectPublish(); p.Topic != "wills/meter" || string(p.Payload) != "lost" {
		t.Fatalf("watcher got %q %q", p.Topic, p.Payload)
	}
}
