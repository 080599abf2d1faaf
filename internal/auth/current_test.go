package auth

import (
	"fmt"
	"os"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/petrel-mqtt/petrel/broker"
)

// TestReloadAppliesUsersFileToKnownIdentities: a users-file reload that
// narrows a user's roles, moves it to another tenant or removes it
// applies to identities authenticated before (a live connection, the
// copy an offline session keeps), not only to the next CONNECT; an
// unchanged entry keeps its grants. Broker.Reauthorize asks through these
// identities after SIGHUP.
func TestReloadAppliesUsersFileToKnownIdentities(t *testing.T) {
	bc, err := HashBcrypt([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(tenant, roles string) string {
		return fmt.Sprintf("  - {username: u, password: '%s', tenant: %s, roles: [%s]}\n", bc, tenant, roles)
	}
	tests := []struct {
		name     string
		users    string // the users file after the change
		readable bool   // A/read/x still allowed
		public   bool   // A/read/public/x still allowed
	}{
		{"unchanged", entry("A", "BUBBLE_UP_READ_CONSUMER"), true, true},
		{"roles narrowed", entry("A", "PUBLIC"), false, true},
		{"moved to tenant B", entry("B", "BUBBLE_UP_READ_CONSUMER"), false, false},
		{"removed", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uf := writeUsers(t, entry("A", "BUBBLE_UP_READ_CONSUMER"))
			roles := append(DefaultRoles(), Role{Name: "PUBLIC", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/read/public/#"}})
			cfg := Config{UsersFile: uf, Roles: roles}
			s := newService(t, cfg)
			id, err := connect(s, "c", "u", []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			cp := *id // what an offline session keeps
			if !s.CanSubscribe(id, "A/read/x", 1).OK || !s.CanReceive(&cp, "A/read/x") {
				t.Fatal("refused before the reload")
			}
			if err := os.WriteFile(uf, []byte("users:\n"+tt.users), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			if got := s.CanSubscribe(id, "A/read/x", 1).OK; got != tt.readable {
				t.Errorf("live identity: CanSubscribe A/read/x = %v, want %v", got, tt.readable)
			}
			if got := s.CanReceive(&cp, "A/read/x"); got != tt.readable {
				t.Errorf("offline copy: CanReceive A/read/x = %v, want %v", got, tt.readable)
			}
			if got := s.CanSubscribe(&cp, "A/read/public/x", 1).OK; got != tt.public {
				t.Errorf("offline copy: CanSubscribe A/read/public/x = %v, want %v", got, tt.public)
			}
		})
	}
}

// TestTokenIdentityUnknownOnceJWTIsOff: a token identity authenticated
// before (a live connection, or a will's holder restored from the store)
// keeps its token's roles while JWT authentication is on, and has none
// once a reload turned it off.
func TestTokenIdentityUnknownOnceJWTIsOff(t *testing.T) {
	cfg := Config{JWT: JWTConfig{Secret: testSecret}}
	s := newService(t, cfg)
	id, err := connect(s, "c", "", []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("A", "GATEWAY_PUBLISHER"), "")))
	if err != nil {
		t.Fatal(err)
	}
	holder := &broker.Identity{Tenant: id.Tenant, ClientID: id.ClientID, Roles: id.Roles, Method: id.Method,
		Attrs: map[string]string{AttrMethod: "jwt"}} // as restored from a store record
	for _, who := range []*broker.Identity{id, holder} {
		if !s.CanPublish(who, "A/status", 1, false) {
			t.Fatal("refused with JWT on")
		}
	}
	if err := s.Reload(Config{}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []*broker.Identity{id, holder} {
		if s.CanPublish(who, "A/status", 1, false) {
			t.Errorf("%+v may publish with JWT authentication off", who)
		}
	}
}
