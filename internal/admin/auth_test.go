package admin_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// token signs a JWT for tenant with roles with the fixture's secret.
func token(t *testing.T, tenant string, roles ...string) string {
	t.Helper()
	s, err := auth.NewSigner([]byte(jwtSecret), "HS256", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Issue(auth.Claims{Tenant: tenant, Roles: roles, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAuthOffLoopback: off loopback every request but the health probes
// authenticates; a viewer reads and may not change anything; a user
// without an admin role is refused.
func TestAuthOffLoopback(t *testing.T) {
	svc := authService(t)
	e := start(t, broker.Options{Authenticator: svc, Authorizer: svc}, admin.Options{Authenticator: svc, OperatorTenant: "ops"},
		nonLoopbackIP(t))
	status, _ := e.do("GET", "/api/v1/clients", none, "")
	if status != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", status)
	}
	req, _ := http.NewRequest("GET", e.base+"/api/v1/stats", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Values("WWW-Authenticate"); len(h) != 2 || !strings.HasPrefix(h[0], "Basic") || !strings.HasPrefix(h[1], "Bearer") {
		t.Fatalf("WWW-Authenticate %q", h)
	}
	tests := []struct {
		name         string
		c            cred
		method, path string
		want         int
	}{
		{"wrong password", cred{user: opAdmin, pass: "guess"}, "GET", "/api/v1/clients", http.StatusUnauthorized},
		{"unknown user", cred{user: "ghost", pass: password}, "GET", "/api/v1/clients", http.StatusUnauthorized},
		{"forged token", cred{bearer: token(t, "ops", api.RoleAdmin) + "x"}, "GET", "/api/v1/clients", http.StatusUnauthorized},
		{"token that is not a JWT", cred{bearer: "opaque"}, "GET", "/api/v1/clients", http.StatusUnauthorized},
		{"no admin role", cred{user: nobody, pass: password}, "GET", "/api/v1/clients", http.StatusForbidden},
		{"viewer reads", cred{user: opViewer, pass: password}, "GET", "/api/v1/clients", http.StatusOK},
		{"viewer reads stats", cred{user: opViewer, pass: password}, "GET", "/api/v1/stats", http.StatusOK},
		{"viewer kicks", cred{user: opViewer, pass: password}, "DELETE", "/api/v1/clients/x", http.StatusForbidden},
		{"viewer deletes a session", cred{user: opViewer, pass: password}, "DELETE", "/api/v1/sessions/x", http.StatusForbidden},
		{"viewer deletes retained", cred{user: opViewer, pass: password}, "DELETE", "/api/v1/retained/x", http.StatusForbidden},
		{"viewer publishes", cred{user: opViewer, pass: password}, "POST", "/api/v1/publish", http.StatusForbidden},
		{"viewer reloads", cred{user: opViewer, pass: password}, "POST", "/api/v1/reload", http.StatusForbidden},
		{"admin kicks", cred{user: opAdmin, pass: password}, "DELETE", "/api/v1/clients/x", http.StatusNotFound},
		{"admin token reads", cred{bearer: token(t, "ops", api.RoleAdmin)}, "GET", "/api/v1/stats", http.StatusOK},
		{"viewer token kicks", cred{bearer: token(t, "ops", api.RoleViewer)}, "DELETE", "/api/v1/clients/x", http.StatusForbidden},
		{"health without credentials", none, "GET", "/healthz", http.StatusOK},
		{"readiness without credentials", none, "GET", "/readyz", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, b := e.do(tt.method, tt.path, tt.c, ""); status != tt.want {
				t.Fatalf("%s %s: %d, want %d (%s)", tt.method, tt.path, status, tt.want, b)
			}
		})
	}
}

// TestNoAuthConfiguredServesLoopbackOnly: without an Authenticator only
// loopback clients are served; credentials change nothing off loopback.
func TestNoAuthConfiguredServesLoopbackOnly(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, nonLoopbackIP(t))
	for _, c := range []cred{none, {user: "admin", pass: "admin"}, {bearer: token(t, "ops", api.RoleAdmin)}} {
		if status, _ := e.do("GET", "/api/v1/clients", c, ""); status != http.StatusUnauthorized {
			t.Fatalf("%+v: %d, want 401", c, status)
		}
	}
	e.must("GET", "/healthz", none, "", http.StatusOK, nil)
	lo := start(t, broker.Options{}, admin.Options{}, "")
	lo.must("GET", "/api/v1/clients", none, "", http.StatusOK, nil)
}

// TestLoopbackWithAuthConfigured: with authentication configured, a
// loopback client authenticates too, unless OpenOnLoopback says not.
func TestLoopbackWithAuthConfigured(t *testing.T) {
	svc := authService(t)
	e := start(t, broker.Options{Authenticator: svc, Authorizer: svc}, admin.Options{Authenticator: svc, OperatorTenant: "ops"}, "")
	e.must("GET", "/api/v1/clients", none, "", http.StatusUnauthorized, nil)
	e.must("GET", "/api/v1/clients", cred{user: opViewer, pass: password}, "", http.StatusOK, nil)
	o := start(t, broker.Options{Authenticator: svc, Authorizer: svc},
		admin.Options{Authenticator: svc, OperatorTenant: "ops", OpenOnLoopback: true}, "")
	o.must("DELETE", "/api/v1/clients/x", none, "", http.StatusNotFound, nil)
	// Publishing needs an identity the Authorizer knows.
	o.must("POST", "/api/v1/publish", none, `{"topic":"ops/x"}`, http.StatusForbidden, nil)
}

// TestTenantScopedPrincipals: a principal of tenant A sees and acts on
// tenant A only, though tenant B has a client of the same id; an operator
// sees both.
func TestTenantScopedPrincipals(t *testing.T) {
	svc := authService(t)
	e := start(t, broker.Options{Authenticator: svc, Authorizer: svc}, admin.Options{Authenticator: svc, OperatorTenant: "ops"}, "")
	connect := func(user string) *mqtttest.Client {
		c := mqtttest.Dial(t, e.mqtt, packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: "meter-001", Username: user, Password: []byte(password), KeepAlive: 60}); ack.ReasonCode != packet.Success {
			t.Fatalf("%s: CONNACK %v", user, ack.ReasonCode)
		}
		return c
	}
	ca, cb := connect("dev-a"), connect("dev-b")
	ca.Subscribe(1, packet.Subscription{Filter: "A/cmd/#", QoS: 1})
	cb.Subscribe(1, packet.Subscription{Filter: "B/cmd/#", QoS: 1})
	op := cred{user: opAdmin, pass: password}
	e.must("POST", "/api/v1/publish", op, `{"topic":"ops/r","retain":true,"payload":"x"}`, http.StatusOK, nil)

	tenants := func(c cred, path string) string {
		t.Helper()
		var p api.Page[api.Session]
		e.must("GET", path, c, "", http.StatusOK, &p)
		var out []string
		for _, s := range p.Items {
			out = append(out, s.Tenant+"/"+s.ClientID)
		}
		return strings.Join(out, " ")
	}
	if got := tenants(op, "/api/v1/clients"); got != "A/meter-001 B/meter-001" {
		t.Fatalf("operator sees %q", got)
	}
	if got := tenants(op, "/api/v1/clients?tenant=B"); got != "B/meter-001" {
		t.Fatalf("operator filtering tenant B sees %q", got)
	}
	for _, c := range []cred{{user: aViewer, pass: password}, {bearer: token(t, "A", api.RoleViewer)}} {
		if got := tenants(c, "/api/v1/clients"); got != "A/meter-001" {
			t.Fatalf("tenant A's viewer sees %q", got)
		}
		if got := tenants(c, "/api/v1/sessions"); got != "A/meter-001" {
			t.Fatalf("tenant A's viewer sees sessions %q", got)
		}
		var d api.Session
		e.must("GET", "/api/v1/clients/meter-001", c, "", http.StatusOK, &d)
		if d.Tenant != "A" || d.SubscriptionList[0].Filter != "A/cmd/#" {
			t.Fatalf("tenant A's viewer reads %+v", d)
		}
		var subs api.Page[api.Subscription]
		e.must("GET", "/api/v1/subscriptions", c, "", http.StatusOK, &subs)
		if len(subs.Items) != 1 || subs.Items[0].Tenant != "A" {
			t.Fatalf("tenant A's viewer sees subscriptions %+v", subs.Items)
		}
		for _, path := range []string{
			"/api/v1/clients?tenant=B", "/api/v1/clients/meter-001?tenant=B", "/api/v1/sessions?tenant=B",
			"/api/v1/subscriptions?tenant=B", "/api/v1/retained?filter=%23", "/api/v1/retained?filter=B/%23",
			"/api/v1/retained/ops/r", "/api/v1/stats", "/metrics",
		} {
			e.must("GET", path, c, "", http.StatusForbidden, nil)
		}
	}
	a := cred{user: aAdmin, pass: password}
	e.must("DELETE", "/api/v1/clients/meter-001?tenant=B", a, "", http.StatusForbidden, nil)
	e.must("DELETE", "/api/v1/sessions/meter-001?tenant=B", a, "", http.StatusForbidden, nil)
	e.must("DELETE", "/api/v1/retained/ops/r", a, "", http.StatusForbidden, nil)
	e.must("POST", "/api/v1/reload", a, "", http.StatusForbidden, nil)
	// Its publishes are authorized as its identity: its tenant's topics only.
	e.must("POST", "/api/v1/publish", a, `{"topic":"B/cmd/x","payload":"x"}`, http.StatusForbidden, nil)
	cb.ExpectNone(100 * time.Millisecond)
	e.must("POST", "/api/v1/publish", a, `{"topic":"A/cmd/x","payload":"x","qos":1}`, http.StatusOK, nil)
	if p := ca.ExpectPublish(); p.Topic != "A/cmd/x" {
		t.Fatalf("tenant A's client got %q", p.Topic)
	}
	// Its kick reaches its own client, never B's of the same id.
	e.must("DELETE", "/api/v1/clients/meter-001", a, "", http.StatusOK, nil)
	ca.ExpectClosed()
	cb.ExpectNone(100 * time.Millisecond)
	if got := tenants(op, "/api/v1/clients"); got != "B/meter-001" {
		t.Fatalf("after tenant A's kick the operator sees %q", got)
	}
}

// blocker is an Authenticator whose checks wait until released.
type blocker struct {
	in      atomic.Int32
	release chan struct{}
}

func (b *blocker) Authenticate(ctx context.Context, _ *broker.ConnectInfo) (*broker.Identity, error) {
	b.in.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &broker.Identity{Tenant: "ops", Roles: []string{api.RoleViewer}}, nil
}

// TestCredentialChecksBounded: at most admin.MaxAuthChecks credential
// checks run at once; a request past the bound is refused with 503 at
// once instead of queueing a password hash behind the others.
func TestCredentialChecksBounded(t *testing.T) {
	bl := &blocker{release: make(chan struct{})}
	e := start(t, broker.Options{}, admin.Options{Authenticator: bl, OperatorTenant: "ops"}, "")
	var wg sync.WaitGroup
	codes := make(chan int, admin.MaxAuthChecks)
	for range admin.MaxAuthChecks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := e.do("GET", "/api/v1/clients", cred{user: "u", pass: "p"}, "")
			codes <- status
		}()
	}
	mqtttest.Eventually(t, 5*time.Second, func() bool { return bl.in.Load() == admin.MaxAuthChecks }, "the checks to fill the bound")
	status, _ := e.do("GET", "/api/v1/clients", cred{user: "u", pass: "p"}, "")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("a check past the bound: %d, want 503", status)
	}
	if n := bl.in.Load(); n != admin.MaxAuthChecks {
		t.Fatalf("%d checks ran, want %d", n, admin.MaxAuthChecks)
	}
	close(bl.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a check within the bound: %d", c)
		}
	}
	e.must("GET", "/api/v1/clients", cred{user: "u", pass: "p"}, "", http.StatusOK, nil)
}

// TestHostileInput: bodies over the bound, garbage JSON, bad cursors and
// limits are refused without harm; a huge limit is capped, not refused.
func TestHostileInput(t *testing.T) {
	e := start(t, broker.Options{}, admin.Options{}, "")
	big := `{"topic":"a","payload":"` + strings.Repeat("x", 2<<20) + `"}`
	e.must("POST", "/api/v1/publish", none, big, http.StatusRequestEntityTooLarge, nil)
	for _, body := range []string{"", "garbage", "[]", `{"topic":1}`, "\x00\xff", `{"topic":"a"}` + strings.Repeat(" ", 10) + "x"} {
		e.must("POST", "/api/v1/publish", none, body, http.StatusBadRequest, nil)
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=x", "limit=99999999999999999999", "cursor=bm90IGpzb24", "cursor=WyJhIl0"} {
		e.must("GET", "/api/v1/sessions?"+q, none, "", http.StatusBadRequest, nil)
	}
	for _, id := range []string{"c0", "c1", "c2"} {
		mqtttest.Connect(t, e.mqtt, packet.V311, id, false)
	}
	var p api.Page[api.Session]
	e.must("GET", "/api/v1/sessions?limit=9223372036854775807", none, "", http.StatusOK, &p)
	if len(p.Items) != 3 {
		t.Fatalf("%d sessions with a huge limit, want 3", len(p.Items))
	}
	// A request line over the header bound is refused: 431, or a reset
	// when the server closes while the request is still arriving.
	if resp, err := e.client.Get(e.base + "/api/v1/retained/" + strings.Repeat("a", 300<<10)); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("oversized request line: %d, want 431", resp.StatusCode)
		}
	}
	e.must("GET", "/api/v1/nothing", none, "", http.StatusNotFound, nil)
	e.must("PUT", "/api/v1/clients", none, "", http.StatusMethodNotAllowed, nil)
}
