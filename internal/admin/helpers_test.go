package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a live broker with its admin listener.
type env struct {
	t      *testing.T
	b      *broker.Broker
	mqtt   string // the broker's MQTT address
	base   string // http://host:port of the admin listener
	srv    *admin.Server
	client *http.Client
}

// start runs a broker with bo and an admin listener with ao on host
// (127.0.0.1 unless given), both stopped when the test ends.
func start(t *testing.T, bo broker.Options, ao admin.Options, host string) *env {
	t.Helper()
	b, addr := mqtttest.StartBroker(t, bo)
	ao.Broker = b
	if ao.Logger == nil {
		ao.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := admin.New(ao)
	if err != nil {
		t.Fatal(err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("admin shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("admin Serve returned %v", err)
		}
	})
	return &env{t: t, b: b, mqtt: addr, base: "http://" + ln.Addr().String(), srv: srv, client: hc}
}

// cred is how a request authenticates.
type cred struct {
	user, pass string
	bearer     string
}

// do sends a request and returns the status and body.
func (e *env) do(method, path string, c cred, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.user != "" || c.pass != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// get sends a request that must answer want, and decodes the body into v
// (when not nil).
func (e *env) must(method, path string, c cred, body string, want int, v any) []byte {
	e.t.Helper()
	status, b := e.do(method, path, c, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

// esc escapes a client id or topic for a path segment.
func esc(s string) string { return url.PathEscape(s) }

// Users of the auth fixture (password "secret" each): the operator
// tenant's admin and viewer, tenant A's viewer and admin, a user without
// an admin role.
const (
	opAdmin  = "op-admin"
	opViewer = "op-viewer"
	aViewer  = "a-viewer"
	aAdmin   = "a-admin"
	nobody   = "nobody"
	password = "secret"
	// jwtSecret signs the fixture's tokens (HS256).
	jwtSecret = "0123456789abcdef0123456789abcdef"
)

// authService returns an auth.Service with the fixture's users file and
// JWT secret, and roles allowing the admins to publish under their
// tenant and subscribers to read anything of theirs.
func authService(t *testing.T) *auth.Service {
	t.Helper()
	h, err := auth.HashBcrypt([]byte(password), 4)
	if err != nil {
		t.Fatal(err)
	}
	users := "users:\n"
	for _, u := range []struct{ name, tenant, roles string }{
		{opAdmin, "ops", "[PETREL_ADMIN, PUB]"},
		{opViewer, "ops", "[PETREL_VIEWER]"},
		{aViewer, "A", "[PETREL_VIEWER]"},
		{aAdmin, "A", "[PETREL_ADMIN, PUB]"},
		{nobody, "ops", "[SUB]"},
		{"dev-a", "A", "[SUB]"},
		{"dev-b", "B", "[SUB]"},
	} {
		users += "  - {username: " + u.name + ", password: '" + h + "', tenant: " + u.tenant + ", roles: " + u.roles + "}\n"
	}
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{
		UsersFile: path,
		JWT:       auth.JWTConfig{Secret: jwtSecret},
		Roles: []auth.Role{
			{Name: "PUB", Activity: "publish", MaxQoS: 2, Retain: true, Topics: []string{"{tenantId}/#"}},
			{Name: "SUB", Activity: "subscribe", MaxQoS: 2, Topics: []string{"{tenantId}/#"}},
		},
	}, auth.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// nonLoopbackIP returns an address of this host that is not loopback, so
// that a request to it comes from off loopback; the test is skipped on a
// host without one.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}
