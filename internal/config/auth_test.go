package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/auth"
)

func TestNoAuthSectionMeansAnonymous(t *testing.T) {
	c, err := Parse([]byte("log: {level: info}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.AuthConfig(); ok || c.Auth != nil {
		t.Fatal("auth configured without an auth: section")
	}
	if c.BrokerOptions().UnauthorizedPublish != "" {
		t.Fatal("unauthorized publish set without auth")
	}
}

func TestEmptyAuthSectionLocksDown(t *testing.T) {
	for _, y := range []string{"auth: {}\n", "auth:\n"} {
		c, err := Parse([]byte(y), nil)
		if err != nil {
			t.Fatal(err)
		}
		ac, ok := c.AuthConfig()
		if !ok || ac.Anonymous.Enabled || ac.DefaultTenant != "ssni" || ac.JWT.ClockSkew != 30*time.Second {
			t.Fatalf("%q: %+v %v", y, ac, ok)
		}
		if ac.Roles != nil {
			t.Fatal("default roles should be left to auth (nil)")
		}
		if c.BrokerOptions().UnauthorizedPublish != "close" {
			t.Fatal("unauthorized publish default")
		}
	}
}

func TestAuthSection(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, _ := auth.HashBcrypt([]byte("x"), 4)
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(users, []byte("users:\n  - {username: gw, password: '"+hash+"', roles: [GATEWAY_PUBLISHER]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := `
listeners: [{type: tcp, address: "0.0.0.0:1883"}]
auth:
  users_file: ` + users + `
  default_tenant: internal
  unauthorized_publish: ack-and-drop
  anonymous: {enabled: false}
  jwt:
    secret_file: ` + secret + `
    issuer: petrel
    clock_skew: 5s
    disconnect_on_expiry: true
  certificate: {enabled: true, users: [{name: bridge, tenant: B, roles: [GATEWAY_PUBLISHER]}]}
  roles:
    - name: READER
      activity: subscribe
      max_qos: 1
      topics: ["{tenantId}/read/#"]
      deny: ["{tenantId}/read/secret/#"]
    - {name: GATEWAY_PUBLISHER, activity: publish, max_qos: 1, topics: ["{tenantId}/#"]}
  token_endpoint:
    address: 127.0.0.1:0
    key_file: ` + secret + `
    ttl: 10m
    clients: [{client_id: app, secret_hash: '` + hash + `', tenant: A, roles: [READER]}]
`
	c, err := Parse([]byte(y), []string{"PETREL_AUTH_JWT_AUDIENCE=mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	ac, ok := c.AuthConfig()
	if !ok || ac.DefaultTenant != "internal" || ac.JWT.Audience != "mqtt" || !ac.JWT.DisconnectOnExpiry || len(ac.Roles) != 2 || ac.Roles[0].MaxQoS != 1 {
		t.Fatalf("%+v", ac)
	}
	if c.BrokerOptions().UnauthorizedPublish != "ack-and-drop" {
		t.Fatal("unauthorized_publish not passed on")
	}
	tc, on, err := c.TokenEndpointConfig()
	if err != nil || !on || tc.TTL != 10*time.Minute || tc.Issuer != "petrel" || tc.Audience != "mqtt" || len(tc.Clients) != 1 {
		t.Fatalf("%+v %v %v", tc, on, err)
	}

	// A token endpoint whose key the JWT settings do not accept is refused by Check.
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("ffffffffffffffffffffffffffffffffffff"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Auth.TokenEndpoint.KeyFile = other
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "would be refused") {
		t.Fatalf("mismatched endpoint key: %v", err)
	}
}

func TestAuthErrorsNameTheKeyPath(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"auth: {jwt: {secrt: x}}\n", "auth.jwt.secrt: unknown key"},
		{"auth: {unauthorized_publish: drop}\n", "auth.unauthorized_publish"},
		{"auth: {jwt: {secret: short}}\n", "auth.jwt.secret: 5 bytes"},
		{"auth: {jwt: {algorithms: [none]}}\n", "auth.jwt.algorithms[0]"},
		{"auth: {roles: [{name: R, activity: read, topics: [a]}]}\n", "auth.roles[0]"},
		{"auth: {roles: [{name: R, activity: both, max_qos: 3, topics: [a]}]}\n", "auth.roles[0].max_qos"},
		{"auth: {roles: [{name: R, activity: both, topics: ['a/#/b']}]}\n", "auth.roles[0]"},
		{"auth: {roles: [{name: R, activity: both, topics: [a]}, {name: R, activity: both, topics: [b]}]}\n", "auth.roles[1].name"},
		{"auth: {token_endpoint: {address: nowhere}}\n", "auth.token_endpoint.address"},
		{"auth: {token_endpoint: {address: ':1', clients: [{client_id: a, secret_hash: plain}]}}\n", "auth.token_endpoint.clients[0].secret_hash"},
		{"auth: {certificate: {username: email}}\n", "auth.certificate.username"},
		{"auth: {jwt: {clock_skew: soon}}\n", "auth.jwt.clock_skew"},
		{"auth: {password_checks: {max_concurrent: -1}}\n", "auth.password_checks.max_concurrent: must not be negative"},
		{"auth: {password_checks: {cpu: -0.5}}\n", "auth.password_checks.cpu: must not be negative"},
		{"auth: {password_checks: {memory: -1}}\n", "auth.password_checks.memory"},
		{"auth: {password_checks: {max_wait: -1s}}\n", "auth.password_checks.max_wait: must not be negative"},
		{"auth: {password_checks: {user_failures: -1}}\n", "auth.password_checks.user_failures"},
		{"auth: {password_checks: {address_failures: -1}}\n", "auth.password_checks.address_failures"},
		{"auth: {password_checks: {failure_window: -1m}}\n", "auth.password_checks.failure_window"},
		{"auth: {password_checks: {max_tracked: -1}}\n", "auth.password_checks.max_tracked"},
		{"auth: {password_checks: {max_waiting: -1}}\n", "auth.password_checks.max_waiting: must not be negative"},
		{"auth: {password_checks: {refusal_delay: -1s}}\n", "auth.password_checks.refusal_delay: must not be negative"},
		{"auth: {password_checks: {refusal_hold: -1}}\n", "auth.password_checks.refusal_hold: must not be negative"},
		{"auth: {password_checks: {refusal_hold_per_address: -1}}\n", "auth.password_checks.refusal_hold_per_address"},
		{"auth: {password_checks: {slots: 2}}\n", "auth.password_checks.slots: unknown key"},
		{"auth: {token_endpoint: {trusted_proxies: [10.0.0.0/33]}}\n", "auth.token_endpoint.trusted_proxies"},
		{"auth: {token_endpoint: {trusted_proxies: [proxy.example]}}\n", "auth.token_endpoint.trusted_proxies"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// TestPasswordChecksSection: auth.password_checks reaches auth.Config
// with its defaults filled in, and token_endpoint.trusted_proxies the
// token endpoint.
func TestPasswordChecksSection(t *testing.T) {
	c, err := Parse([]byte("auth: {}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := c.AuthConfig()
	want := auth.PasswordChecks{Memory: 256 << 20, MaxWait: 2 * time.Second, MaxWaiting: 64, UserFailures: 5, AddressFailures: 20,
		FailureWindow: time.Minute, MaxTracked: 10000, RefusalDelay: time.Second}
	if ac.Checks != want {
		t.Fatalf("defaults %+v, want %+v", ac.Checks, want)
	}
	if o := c.BrokerOptions(); o.HeldRefusals != 1024 || o.HeldRefusalsPerAddress != 64 {
		t.Fatalf("held refusals %d / %d per address, want the defaults 1024 / 64", o.HeldRefusals, o.HeldRefusalsPerAddress)
	}
	c, err = Parse([]byte(`auth:
  password_checks: {max_concurrent: 3, cpu: 0.5, memory: 1GiB, max_wait: 500ms, max_waiting: 7, user_failures: 2, address_failures: 9, failure_window: 5m, max_tracked: 50,
    refusal_delay: 250ms, refusal_hold: 10, refusal_hold_per_address: 3}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	ac, _ = c.AuthConfig()
	want = auth.PasswordChecks{MaxConcurrent: 3, CPU: 0.5, Memory: 1 << 30, MaxWait: 500 * time.Millisecond, MaxWaiting: 7, UserFailures: 2,
		AddressFailures: 9, FailureWindow: 5 * time.Minute, MaxTracked: 50, RefusalDelay: 250 * time.Millisecond}
	if ac.Checks != want {
		t.Fatalf("%+v, want %+v", ac.Checks, want)
	}
	if o := c.BrokerOptions(); o.HeldRefusals != 10 || o.HeldRefusalsPerAddress != 3 {
		t.Fatalf("held refusals %d / %d per address, want 10 / 3", o.HeldRefusals, o.HeldRefusalsPerAddress)
	}
	// refusal_delay 0 turns the delay off (not the default).
	c, err = Parse([]byte("auth: {password_checks: {refusal_delay: 0s}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ac, _ = c.AuthConfig(); ac.Checks.RefusalDelay != 0 {
		t.Fatalf("refusal_delay 0s gave %v, want 0 (off)", ac.Checks.RefusalDelay)
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, _ := auth.HashBcrypt([]byte("x"), 4)
	c, err = Parse([]byte(`auth:
  token_endpoint:
    address: 127.0.0.1:0
    key_file: `+key+`
    trusted_proxies: [10.0.0.0/8, "::1"]
    clients: [{client_id: app, secret_hash: '`+hash+`', tenant: A}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, _, err := c.TokenEndpointConfig()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tc.TrustedProxies) != "[10.0.0.0/8 ::1/128]" {
		t.Fatalf("trusted proxies %v", tc.TrustedProxies)
	}
}

func TestAuthCheckLoadsFiles(t *testing.T) {
	for _, y := range []string{
		"auth: {users_file: /nonexistent/users.yaml}\n",
		"auth: {jwt: {public_key_file: /nonexistent.pem}}\n",
	} {
		c, err := Parse([]byte(y), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Check(); err == nil {
			t.Errorf("%q: Check passed", y)
		}
	}
	// Anonymous on a public listener still needs allow_anonymous_remote.
	c, err := Parse([]byte("listeners: [{type: tcp, address: '0.0.0.0:1883'}]\nauth: {anonymous: {enabled: true}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "auth.anonymous.enabled") {
		t.Fatalf("anonymous remote: %v", err)
	}
	// An auth section without anonymous may listen anywhere.
	c, err = Parse([]byte("listeners: [{type: tcp, address: '0.0.0.0:1883'}]\nauth: {}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestExampleAuthSection uncomments the example file's auth: block and
// checks it parses, and that the roles it shows are the defaults.
func TestExampleAuthSection(t *testing.T) {
	data, err := os.ReadFile("../../petrel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "\n# auth:\n")
	if !ok {
		t.Fatal("no commented auth: block in the example")
	}
	var b strings.Builder
	b.WriteString("auth:\n")
	for _, line := range strings.Split(block, "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			b.WriteString(rest + "\n")
		} else if line != "" {
			t.Fatalf("line %q in the auth block is not commented", line)
		}
	}
	c, err := Parse([]byte(b.String()), nil)
	if err != nil {
		t.Fatalf("uncommented example: %v\n%s", err, b.String())
	}
	ac, _ := c.AuthConfig()
	def := auth.DefaultRoles()
	if len(ac.Roles) != len(def) {
		t.Fatalf("example roles %+v, defaults %+v", ac.Roles, def)
	}
	for i := range def {
		if r := ac.Roles[i]; r.Name != def[i].Name || r.Activity != def[i].Activity || r.MaxQoS != def[i].MaxQoS ||
			r.Retain != def[i].Retain || strings.Join(r.Topics, ",") != strings.Join(def[i].Topics, ",") {
			t.Errorf("example role %+v differs from the default %+v", r, def[i])
		}
	}
	empty, _ := Parse([]byte("auth: {}\n"), nil)
	a, d := *c.Auth, *empty.Auth
	a.UsersFile, a.JWT.SecretFile, a.Roles, d.Roles = "", "", nil, nil
	if fmt.Sprint(a) != fmt.Sprint(d) {
		t.Errorf("example values differ from the defaults:\n%+v\n%+v", a, d)
	}
}
