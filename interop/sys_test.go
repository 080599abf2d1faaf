package interop_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// sysInterval is the $SYS publishing interval of these tests.
const sysInterval = 50 * time.Millisecond

// TestSysClientsConnectedWithMosquittoSub reads
// $SYS/broker/clients/connected with Debian's mosquitto_sub: the retained
// value counts the clients connected.
func TestSysClientsConnectedWithMosquittoSub(t *testing.T) {
	b, addr := startBroker(t)
	if err := b.StartSys(sysInterval, "petrel test"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"one", "two"} {
		mqtttest.Connect(t, addr, packet.V311, id, true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	defer cancel()
	var got string
	mqtttest.Eventually(t, mosquittoTimeout, func() bool {
		// -C 1: the first message, the retained value; -W bounds the wait.
		lines := startSub(t, ctx, addr, "-V", "mqttv311", "-t", "$SYS/broker/clients/connected", "-C", "1", "-W", "5").wait(t)
		got = lines[0]
		n, err := strconv.Atoi(got)
		return err == nil && n >= 2
	}, "$SYS/broker/clients/connected to count the two clients")
	version := startSub(t, ctx, addr, "-V", "5", "-t", "$SYS/broker/version", "-C", "1", "-W", "5").wait(t)
	if version[0] != "petrel test" {
		t.Errorf("$SYS/broker/version = %q", version[0])
	}
}

// sysTenantService is an auth.Service where tokens of tenants A and B
// carry a role that grants subscribing to their own $SYS subtree.
func sysTenantService(t *testing.T) (*auth.Service, map[string]string) {
	t.Helper()
	roles := append(auth.DefaultRoles(),
		auth.Role{Name: "SYS_TENANT_READER", Activity: auth.ActivitySubscribe, MaxQoS: 0, Topics: []string{"$SYS/tenants/{tenantId}/#"}},
	)
	svc, err := auth.New(auth.Config{
		JWT:   auth.JWTConfig{Secret: e2eSecret, ClockSkew: 5 * time.Second},
		Roles: roles,
	}, auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tokens := map[string]string{}
	for _, tenant := range []string{"A", "B"} {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": tenant,
			"mqttScope": []string{"SYS_TENANT_READER", "BUBBLE_UP_READ_CONSUMER"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		if tokens[tenant], err = tk.SignedString([]byte(e2eSecret)); err != nil {
			t.Fatal(err)
		}
	}
	return svc, tokens
}

// TestSysTenantBoundary: with a role granting "$SYS/tenants/{tenantId}/#",
// tenant A reads its own $SYS subtree and nothing else: B's subtree, the
// whole of $SYS, the broker's figures and every wildcard that reaches
// across tenants are refused in SUBACK, and nothing of B arrives.
func TestSysTenantBoundary(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			svc, tokens := sysTenantService(t)
			b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: svc, Authorizer: svc})
			if err := b.StartSys(sysInterval, "petrel test"); err != nil {
				t.Fatal(err)
			}
			bClient := mustConnect(t, addr, v, "b-reader", "", []byte(tokens["B"]))
			a := mustConnect(t, addr, v, "a-reader", "", []byte(tokens["A"]))
			for _, filter := range []string{
				"$SYS/tenants/B/#", "$SYS/tenants/B/clients/connected", "$SYS/#", "$SYS/tenants/#",
				"$SYS/tenants/+/clients/connected", "$SYS/+/B/#", "$SYS/broker/clients/connected", "#", "+/tenants/#",
				"$share/g/$SYS/tenants/B/#",
			} {
				if codes := a.Subscribe(1, packet.Subscription{Filter: filter}); codes[0] != refusedSub(v) {
					t.Errorf("tenant A subscribing %q: SUBACK %v, want %v", filter, codes[0], refusedSub(v))
				}
			}
			if codes := a.Subscribe(2, packet.Subscription{Filter: "$SYS/tenants/A/#"}); codes[0] != 0 {
				t.Fatalf("tenant A subscribing its own subtree: SUBACK %v", codes[0])
			}
			// B's client is connected too, so B's subtree exists: A must
			// get only its own values.
			seen := map[string]string{}
			// The subtree is published every sysInterval and when it
			// changes: wait for the value that counts A's client (a loaded
			// machine may first show the one before it connected).
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && seen["$SYS/tenants/A/clients/connected"] != "1" {
				p, err := a.Read(time.Second)
				if err != nil {
					continue
				}
				if pub, ok := p.(*packet.Publish); ok {
					seen[pub.Topic] = string(pub.Payload)
				}
			}
			if seen["$SYS/tenants/A/clients/connected"] != "1" {
				t.Errorf("tenant A's clients/connected = %q, want 1 (seen %v)", seen["$SYS/tenants/A/clients/connected"], seen)
			}
			for topic := range seen {
				if !strings.HasPrefix(topic, "$SYS/tenants/A/") {
					t.Errorf("tenant A received %q", topic)
				}
			}
			// B reads its own subtree, which exists beside A's.
			if codes := bClient.Subscribe(1, packet.Subscription{Filter: "$SYS/tenants/B/clients/connected"}); codes[0] != 0 {
				t.Fatalf("tenant B subscribing its own subtree: SUBACK %v", codes[0])
			}
			if p := bClient.ExpectPublish(); p.Topic != "$SYS/tenants/B/clients/connected" {
				t.Errorf("tenant B received %q", p.Topic)
			}
		})
	}
}
