package auth

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
)

// TestAdminRolesAreNotUnknown: the admin API's roles, undefined in
// auth.roles, are not logged as unknown roles at each authentication
// (a scraper authenticating every few seconds would fill the log); a
// really unknown role still is.
func TestAdminRolesAreNotUnknown(t *testing.T) {
	var logs bytes.Buffer
	s, err := New(Config{JWT: JWTConfig{Secret: testSecret}},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := NewSigner([]byte(testSecret), "HS256", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sig.Issue(Claims{Tenant: "ops", Roles: []string{RoleAdmin, RoleViewer, "NOPE"}, TTL: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(context.Background(), &broker.ConnectInfo{ClientID: "c", Password: []byte(tok), HasPass: true}); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, RoleAdmin) || strings.Contains(out, RoleViewer) || !strings.Contains(out, "role=NOPE") {
		t.Fatalf("log:\n%s", out)
	}
}
