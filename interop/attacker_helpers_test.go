package interop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// The two-tenant attacker's world: a real auth.Service configured through
// a users file (bcrypt passwords and SCRAM-SHA-256 credentials) and HS256
// JWTs, with the seeds' roles written with {tenantId}, and a broker on
// 127.0.0.1:0 with an ephemeral (memstore) or a disk store.
//
// Payloads say whose data a message is: "secret:" marks tenant A's data an
// attacker must never receive, "evil:" what an attacker publishes that
// tenant A must never receive, "ctl:" the control messages that prove a
// path flows. A crossing is a "secret:" message received by an attacker,
// an "evil:" one received by tenant A, or tenant A's state changed.

const (
	atkSecret = "attacker-suite-hs256-secret-0123456789abcdef"
	// settle is how long a reader keeps listening after its control
	// message arrived: what was routed before the control is already in
	// front of it; this only catches what a broken broker sends late.
	settle = 100 * time.Millisecond
	// expiryN is the 5.0 session expiry interval of a persistent session.
	expiryN = 3600
)

// The roles, in the seeds' style.
var atkRoles = []auth.Role{
	{Name: "BUBBLE_UP_READ_CONSUMER", Activity: auth.ActivitySubscribe, MaxQoS: 2, Topics: []string{"{tenantId}/read/#"}},
	{Name: "BUBBLE_UP_ALARM_CONSUMER", Activity: auth.ActivitySubscribe, MaxQoS: 2, Topics: []string{"{tenantId}/alert/#"}},
	{Name: "GATEWAY_PUBLISHER", Activity: auth.ActivityPublish, MaxQoS: 2, Retain: true, Topics: []string{"{tenantId}/#"}},
	{Name: "PUBLIC_READ", Activity: auth.ActivitySubscribe, MaxQoS: 2, Topics: []string{"{tenantId}/read/public/#"}},
	{Name: "DENY_READER", Activity: auth.ActivitySubscribe, MaxQoS: 2, Topics: []string{"{tenantId}/#"},
		Deny: []string{"{tenantId}/read/secret/#", "{tenantId}/alert/#"}},
	{Name: "COMMON", Activity: auth.ActivityBoth, MaxQoS: 2, Topics: []string{"common/#"}},
}

// roleByName returns one of atkRoles (a copy, for reload scenarios).
func roleByName(name string) auth.Role {
	for _, r := range atkRoles {
		if r.Name == name {
			r.Topics, r.Deny = slices.Clone(r.Topics), slices.Clone(r.Deny)
			return r
		}
	}
	panic("no role " + name)
}

// principal is one identity of the world: a users-file entry (user set)
// or a JWT (user empty).
type principal struct {
	user   string
	tenant string
	roles  []string
}

var (
	fullRoles   = []string{"BUBBLE_UP_READ_CONSUMER", "BUBBLE_UP_ALARM_CONSUMER", "GATEWAY_PUBLISHER", "COMMON"}
	narrowRoles = []string{"PUBLIC_READ", "COMMON"}
	denyRoles   = []string{"DENY_READER", "COMMON"}
)

// principals by the name scenarios use; a "-jwt" suffix is a token.
var principals = map[string]principal{
	"A":            {"a-app", "A", fullRoles},
	"A-jwt":        {"", "A", fullRoles},
	"A-narrow":     {"a-narrow", "A", narrowRoles},
	"A-narrow-jwt": {"", "A", narrowRoles},
	"A-deny":       {"a-deny", "A", denyRoles},
	"A-deny-jwt":   {"", "A", denyRoles},
	"A-other":      {"a-other", "A", fullRoles},
	"gwA":          {"gw-a", "A", []string{"GATEWAY_PUBLISHER"}},
	"B":            {"b-app", "B", fullRoles},
	"B-jwt":        {"", "B", fullRoles},
	"gwB":          {"gw-b", "B", []string{"GATEWAY_PUBLISHER"}},
}

// credCache holds the hashes and SCRAM credentials of the users, made
// once for the package: they are deterministic enough for tests and
// pbkdf2 and bcrypt are what would dominate the suite's CPU otherwise.
var credCache = sync.OnceValue(func() map[string][2]string {
	out := map[string][2]string{}
	for _, p := range principals {
		if p.user == "" {
			continue
		}
		h, err := auth.HashBcrypt([]byte("pw-"+p.user), 4)
		if err != nil {
			panic(err)
		}
		cr, err := auth.NewSCRAMCredentials([]byte("pw-"+p.user), 0)
		if err != nil {
			panic(err)
		}
		out[p.user] = [2]string{h, cr.String()}
	}
	return out
})

// world is one broker and its auth.Service, for one scenario.
type world struct {
	t     *testing.T
	v     packet.Version
	store string // "mem" or "disk"
	dir   string

	users map[string]principal // users-file entries by username, rewritten by setUser
	cfg   auth.Config
	svc   *auth.Service
	opts  broker.Options

	b      *broker.Broker
	addr   string
	st     broker.Store
	closeS func()
}

// newWorld builds the Service and starts the broker with the store kind;
// tweak, when set, adjusts the broker's options.
func newWorld(t *testing.T, v packet.Version, store string, tweak func(*broker.Options)) *world {
	t.Helper()
	w := &world{t: t, v: v, store: store, dir: t.TempDir(), users: map[string]principal{}}
	for _, p := range principals {
		if p.user != "" {
			w.users[p.user] = p
		}
	}
	w.cfg = auth.Config{UsersFile: filepath.Join(w.dir, "users.yaml"),
		JWT:   auth.JWTConfig{Secret: atkSecret, KID: "k1"},
		Roles: slices.Clone(atkRoles)}
	w.writeUsers()
	svc, err := auth.New(w.cfg, auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	w.svc = svc
	w.opts = broker.Options{Authenticator: svc, Authorizer: svc}
	if tweak != nil {
		tweak(&w.opts)
	}
	w.start()
	return w
}

func (w *world) writeUsers() {
	w.t.Helper()
	creds := credCache()
	var sb strings.Builder
	sb.WriteString("users:\n")
	for _, name := range slices.Sorted(maps.Keys(w.users)) {
		p := w.users[name]
		c := creds[name]
		fmt.Fprintf(&sb, "  - {username: %s, password: '%s', scram_sha256: '%s', tenant: %s, roles: [%s]}\n",
			name, c[0], c[1], p.tenant, strings.Join(p.roles, ", "))
	}
	if err := os.WriteFile(w.cfg.UsersFile, []byte(sb.String()), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// start opens the store and starts a broker on it.
func (w *world) start() {
	w.t.Helper()
	switch w.store {
	case "disk":
		st, err := diskstore.Open(filepath.Join(w.dir, "data"), diskstore.Options{Sync: diskstore.SyncNone, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			w.t.Fatal(err)
		}
		var once sync.Once
		w.closeS = func() { once.Do(func() { _ = st.Close() }) } // a close error after the test has nothing to tell
		w.t.Cleanup(w.closeS)                                    // after the broker's shutdown (cleanups run last first)
		w.st = st
	default:
		w.st = memstore.New()
		w.closeS = func() {}
	}
	o := w.opts
	o.Store = w.st
	w.b, w.addr = mqtttest.StartBroker(w.t, o)
}

// restart shuts the broker down and starts a new one on the same store
// (the disk store: what was on disk is all the new broker knows).
func (w *world) restart() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.b.Shutdown(ctx); err != nil {
		w.t.Fatal(err)
	}
	w.closeS()
	w.start()
}

// reload applies the world's users and roles as SIGHUP does: the Service
// reloads, then the broker decides every known session again.
func (w *world) reload() int {
	w.t.Helper()
	w.writeUsers()
	if err := w.svc.Reload(w.cfg); err != nil {
		w.t.Fatal(err)
	}
	return w.b.Reauthorize()
}

// setRole replaces the role named r.Name (reload it with w.reload).
func (w *world) setRole(r auth.Role) {
	for i := range w.cfg.Roles {
		if w.cfg.Roles[i].Name == r.Name {
			w.cfg.Roles[i] = r
			return
		}
	}
	w.cfg.Roles = append(w.cfg.Roles, r)
}

// token returns a JWT for the principal (sub = tenant, mqttScope = roles).
func (w *world) token(p principal) []byte {
	w.t.Helper()
	now := time.Now()
	tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": p.tenant, "mqttScope": p.roles,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	tk.Header["kid"] = "k1"
	s, err := tk.SignedString([]byte(atkSecret))
	if err != nil {
		w.t.Fatal(err)
	}
	return []byte(s)
}

// sess is how a CONNECT asks for its session: clean is 5.0's clean
// start, expiry its session expiry interval. 3.1.1 has one flag: clean
// session 1 for clean with no expiry, else 0 (which persists and resumes).
type sess struct {
	clean  bool
	expiry uint32
}

var (
	cleanSess   = sess{clean: true}
	persistSess = sess{clean: false, expiry: expiryN}
	// freshPersist starts a new persistent session (5.0 clean start with
	// an expiry; 3.1.1 has only clean 0, which resumes).
	freshPersist = sess{clean: true, expiry: expiryN}
)

// peer is one connection of a scenario.
type peer struct {
	*mqtttest.Client
	w   *world
	who string
	id  string
	pid uint16
	// pending are the PUBLISHes read while waiting for something else
	// (a SUBACK); until and drain return them first.
	pending []*packet.Publish
}

// connectOpts are the rarer parts of a CONNECT.
type connectOpts struct {
	will     *packet.Will
	aliasMax uint16
	v        packet.Version // the world's version when 0
}

// try connects as principal who with client id id and returns the CONNACK
// whatever it says.
func (w *world) try(who, id string, s sess, o connectOpts) (*peer, *packet.Connack) {
	w.t.Helper()
	p, ok := principals[who]
	if !ok {
		w.t.Fatalf("no principal %q", who)
	}
	v := w.v
	if o.v != 0 {
		v = o.v
	}
	c := mqtttest.Dial(w.t, w.addr, v)
	con := &packet.Connect{ClientID: id, CleanStart: s.clean, KeepAlive: 60, Will: o.will}
	if v != packet.V5 {
		con.CleanStart = s.clean && s.expiry == 0 // 3.x: a session persists exactly when clean session is 0
	}
	if p.user != "" {
		con.Username, con.UsernameFlag, con.Password = p.user, true, []byte("pw-"+p.user)
	} else {
		con.Password = w.token(p)
		con.UsernameFlag = v != packet.V5 // 3.x: a password needs a username flag [MQTT-3.1.2-22]
	}
	con.PasswordFlag = true
	if v == packet.V5 {
		if s.expiry > 0 {
			con.Properties.SessionExpiryInterval = s.expiry
			con.Properties.Set(packet.PropSessionExpiryInterval)
		}
		if o.aliasMax > 0 {
			con.Properties.TopicAliasMaximum = o.aliasMax
			con.Properties.Set(packet.PropTopicAliasMaximum)
		}
	}
	ack := c.Connect(con)
	return &peer{Client: c, w: w, who: who, id: id}, ack
}

// connect is try that fails the test on a refusal.
func (w *world) connect(who, id string, s sess) (*peer, *packet.Connack) {
	w.t.Helper()
	return w.connectWith(who, id, s, connectOpts{})
}

func (w *world) connectWith(who, id string, s sess, o connectOpts) (*peer, *packet.Connack) {
	w.t.Helper()
	p, ack := w.try(who, id, s, o)
	if ack.ReasonCode != packet.Success {
		w.t.Fatalf("%s as %s: CONNACK %v", id, who, ack.ReasonCode)
	}
	return p, ack
}

func (p *peer) nextPID() uint16 {
	p.pid++
	if p.pid == 0 {
		p.pid = 1
	}
	return p.pid
}

// sub subscribes to filters at QoS 2 (5.0: with subscription identifier
// sid when not 0) and returns the SUBACK codes.
func (p *peer) sub(sid uint32, filters ...string) []packet.ReasonCode {
	p.w.t.Helper()
	s := &packet.Subscribe{PacketID: p.nextPID()}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: f, QoS: 2})
	}
	if sid > 0 && p.Version == packet.V5 {
		s.Properties.SubscriptionIdentifiers = []uint32{sid}
		s.Properties.Set(packet.PropSubscriptionIdentifier)
	}
	p.Send(s)
	for {
		switch m := p.Expect().(type) {
		case *packet.Suback:
			if m.PacketID != s.PacketID {
				p.w.t.Fatalf("%s: SUBACK for packet %d, want %d", p.who, m.PacketID, s.PacketID)
			}
			return m.ReasonCodes
		case *packet.Publish:
			p.ack(m)
			p.pending = append(p.pending, m)
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: m.PacketID})
		default:
			p.w.t.Fatalf("%s: got %s %+v, want SUBACK", p.who, m.Type(), m)
		}
	}
}

// mustSub subscribes and fails unless every filter is granted.
func (p *peer) mustSub(filters ...string) {
	p.w.t.Helper()
	for i, c := range p.sub(0, filters...) {
		if c.IsError() {
			p.w.t.Fatalf("%s: subscription to %s refused: %v", p.who, filters[i], c)
		}
	}
}

// pub publishes and completes the QoS flow, failing unless the broker
// accepts the message (a refusal closes or is acknowledged with an error).
func (p *peer) pub(topic, payload string, qos byte, retain bool) {
	p.w.t.Helper()
	if res := p.tryPub(&packet.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)}); res != "ok" {
		p.w.t.Fatalf("%s: publish %s: %s", p.who, topic, res)
	}
}

// tryPub sends m (its packet id filled in) and reports "ok", "refused
// <code>" or "closed". QoS 0 is followed by a PINGREQ round trip, so the
// broker has routed the message when it returns.
func (p *peer) tryPub(m *packet.Publish) string {
	p.w.t.Helper()
	if m.QoS > 0 {
		m.PacketID = p.nextPID()
	}
	p.Send(m)
	if m.QoS == 0 {
		p.Send(&packet.Pingreq{})
	}
	for {
		pk, err := p.Read(mqtttest.Timeout)
		if err != nil {
			if isClosed(err) {
				return "closed"
			}
			p.w.t.Fatalf("%s: publish %s: %v", p.who, m.Topic, err)
		}
		switch a := pk.(type) {
		case *packet.Pingresp:
			return "ok"
		case *packet.Puback:
			if a.ReasonCode.IsError() {
				return "refused " + a.ReasonCode.String()
			}
			return "ok"
		case *packet.Pubrec:
			if a.ReasonCode.IsError() {
				return "refused " + a.ReasonCode.String()
			}
			p.Send(&packet.Pubrel{PacketID: a.PacketID})
		case *packet.Pubcomp:
			return "ok"
		case *packet.Disconnect:
			return "closed"
		case *packet.Publish: // for the publisher's own subscriptions
			p.ack(a)
			p.pending = append(p.pending, a)
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: a.PacketID})
		}
	}
}

func isClosed(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, new(*net.OpError))
}

// ack completes the receiver's side of a PUBLISH's QoS flow (the PUBREL
// of a QoS 2 message is answered when it arrives, in read).
func (p *peer) ack(m *packet.Publish) {
	switch m.QoS {
	case 1:
		p.Send(&packet.Puback{PacketID: m.PacketID})
	case 2:
		p.Send(&packet.Pubrec{PacketID: m.PacketID})
	}
}

// until reads PUBLISHes, acknowledging them, until one with payload ctl
// arrives, then listens settle longer. It returns every other PUBLISH.
// It fails the test if ctl does not arrive or the connection ends.
func (p *peer) until(ctl string) []*packet.Publish {
	p.w.t.Helper()
	var got []*packet.Publish
	seen := false
	for i, m := range p.pending {
		if string(m.Payload) == ctl {
			seen = true
			got = append(got, p.pending[:i]...)
			got = append(got, p.pending[i+1:]...)
			break
		}
	}
	if !seen {
		got = p.pending
	}
	p.pending = nil
	deadline := time.Now().Add(mqtttest.Timeout)
	for {
		d := time.Until(deadline)
		if seen {
			d = settle
		}
		pk, err := p.Read(d)
		if err != nil {
			if seen && !isClosed(err) {
				return got
			}
			p.w.t.Fatalf("%s: waiting for control %q: %v (got %q)", p.who, ctl, err, payloads(got))
		}
		switch m := pk.(type) {
		case *packet.Publish:
			p.ack(m)
			if string(m.Payload) == ctl && !seen {
				seen = true
				deadline = time.Now()
				continue
			}
			got = append(got, m)
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: m.PacketID})
		case *packet.Pingresp:
		default:
			p.w.t.Fatalf("%s: got %s %+v waiting for control %q", p.who, pk.Type(), pk, ctl)
		}
	}
}

// drain returns what arrives within settle, acknowledging it.
func (p *peer) drain() []*packet.Publish {
	p.w.t.Helper()
	got := p.pending
	p.pending = nil
	for {
		pk, err := p.Read(settle)
		if err != nil {
			return got
		}
		switch m := pk.(type) {
		case *packet.Publish:
			p.ack(m)
			got = append(got, m)
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: m.PacketID})
		}
	}
}

func payloads(ps []*packet.Publish) []string {
	out := make([]string, len(ps))
	for i, m := range ps {
		out[i] = m.Topic + "=" + string(m.Payload)
	}
	return out
}

// crossings counts the messages among got whose payload starts with
// marker ("secret:" or "evil:").
func crossings(got []*packet.Publish, marker string) int {
	n := 0
	for _, m := range got {
		if strings.HasPrefix(string(m.Payload), marker) {
			n++
		}
	}
	return n
}

// noCrossing fails the test with the crossings found among got.
func noCrossing(t *testing.T, who string, got []*packet.Publish, marker string) {
	t.Helper()
	if n := crossings(got, marker); n > 0 {
		t.Errorf("CROSSING: %s received %d %q message(s): %q", who, n, marker, payloads(got))
	}
}

// hasPayloads fails unless got holds each of want (in any order): the
// control assertion that the legitimate traffic flowed.
func hasPayloads(t *testing.T, who string, got []*packet.Publish, want ...string) {
	t.Helper()
	have := map[string]int{}
	for _, m := range got {
		have[string(m.Payload)]++
	}
	for _, w := range want {
		if have[w] == 0 {
			t.Errorf("%s did not receive %q (got %q): its legitimate traffic stopped", who, w, payloads(got))
		}
	}
}

// alive fails unless the connection still answers PINGREQ.
func (p *peer) alive() {
	p.w.t.Helper()
	p.Send(&packet.Pingreq{})
	for {
		pk, err := p.Read(mqtttest.Timeout)
		if err != nil {
			p.w.t.Errorf("CROSSING: %s (%s) lost its connection: %v", p.who, p.id, err)
			return
		}
		switch m := pk.(type) {
		case *packet.Pingresp:
			return
		case *packet.Publish:
			p.ack(m)
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: m.PacketID})
		default:
			p.w.t.Errorf("CROSSING: %s (%s) got %s %+v, want PINGRESP", p.who, p.id, pk.Type(), pk)
			return
		}
	}
}

// bye sends DISCONNECT and waits for the session to be offline.
func (p *peer) bye(tenant string) {
	p.w.t.Helper()
	p.Send(&packet.Disconnect{})
	p.ExpectClosed()
	mqtttest.Eventually(p.w.t, mqtttest.Timeout, func() bool {
		st, ok := p.w.b.ClientStatsIn(tenant, p.id)
		return !ok || !st.Online
	}, p.id+" offline")
}

// waitQueued waits until tenant's session id has n messages queued.
func (w *world) waitQueued(tenant, id string, n int) {
	w.t.Helper()
	mqtttest.Eventually(w.t, mqtttest.Timeout, func() bool {
		st, ok := w.b.ClientStatsIn(tenant, id)
		return ok && st.Queued+st.Inflight >= n
	}, fmt.Sprintf("%d messages owed to %s/%s", n, tenant, id))
}

// refused is the SUBACK code of a refused filter in w's version
// [MQTT-3.9.3-2]: 0x80 in 3.x, 0x87 in 5.0.
func (w *world) refused() packet.ReasonCode {
	if w.v == packet.V5 {
		return packet.NotAuthorized
	}
	return packet.UnspecifiedError
}
