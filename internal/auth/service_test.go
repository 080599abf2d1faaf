package auth

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

func writeUsers(t testing.TB, entries ...string) string {
	t.Helper()
	s := "users:\n"
	for _, e := range entries {
		s += e
	}
	return writeFile(t, "users.yaml", []byte(s))
}

func TestPasswordHashes(t *testing.T) {
	bc, err := HashBcrypt([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	ar := HashArgon2id([]byte("pw"))
	for _, h := range []string{bc, ar} {
		if err := CheckHash(h); err != nil {
			t.Errorf("CheckHash(%q): %v", h, err)
		}
		if err := VerifyPassword(h, []byte("pw")); err != nil {
			t.Errorf("VerifyPassword(%q): %v", h, err)
		}
		if err := VerifyPassword(h, []byte("pw2")); !errors.Is(err, ErrMismatch) {
			t.Errorf("wrong password: %v", err)
		}
	}
	for _, h := range []string{"", "plain", "$argon2id$v=19$m=0,t=1,p=1$AAAA$AAAA", "$argon2i$v=19$m=1,t=1,p=1$a$b", "$2a$xx"} {
		if CheckHash(h) == nil {
			t.Errorf("CheckHash(%q) accepted", h)
		}
	}
}

func TestUsersFileErrors(t *testing.T) {
	bad := map[string]string{
		"unknown key":  "users:\n  - {username: a, passwd: x}\n",
		"no username":  "users:\n  - {password: x}\n",
		"bad hash":     "users:\n  - {username: a, password: plain}\n",
		"duplicate":    "users:\n  - {username: a}\n  - {username: a}\n",
		"bad tenant":   "users:\n  - {username: a, tenant: 'x/y'}\n",
		"bad scram":    "users:\n  - {username: a, scram_sha256: 'SCRAM-SHA-256$1:AA==$AA==:AA=='}\n",
		"not yaml map": "- a\n",
	}
	for name, y := range bad {
		if _, err := ParseUsers([]byte(y)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if u, err := ParseUsers(nil); err != nil || len(u) != 0 {
		t.Errorf("empty file: %v %v", u, err)
	}
}

func TestChain(t *testing.T) {
	bc, _ := HashBcrypt([]byte("gw-secret"), 4)
	ar := HashArgon2id([]byte("ops-secret"))
	uf := writeUsers(t,
		fmt.Sprintf("  - {username: gateway, password: '%s', roles: [GATEWAY_PUBLISHER]}\n", bc),
		fmt.Sprintf("  - {username: ops, password: '%s', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}\n", ar),
		"  - {username: device-7, roles: [GATEWAY_PUBLISHER]}\n",
	)
	hsTok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("B", "BUBBLE_UP_ALARM_CONSUMER"), "")
	base := Config{UsersFile: uf, JWT: JWTConfig{Secret: testSecret}}
	anon := base
	anon.Anonymous = Anonymous{Enabled: true, Roles: []string{"BUBBLE_UP_READ_CONSUMER"}}
	tests := []struct {
		name       string
		cfg        Config
		user       string
		pass       []byte
		wantTenant string
		wantMethod string
		wantCode   packet.ReasonCode
	}{
		{"bcrypt user, default tenant", base, "gateway", []byte("gw-secret"), "ssni", "password", 0},
		{"argon2id user with tenant", base, "ops", []byte("ops-secret"), "A", "password", 0},
		{"wrong password", base, "gateway", []byte("nope"), "", "", packet.BadUsernameOrPassword},
		{"unknown user", base, "mallory", []byte("x"), "", "", packet.BadUsernameOrPassword},
		{"passwordless user cannot log in by password", base, "device-7", []byte(""), "", "", packet.BadUsernameOrPassword},
		{"jwt, no username", base, "", []byte(hsTok), "B", "jwt", 0},
		{"jwt with a users-file username", base, "gateway", []byte(hsTok), "B", "jwt", 0},
		{"anonymous off", base, "", nil, "", "", packet.NotAuthorized},
		{"anonymous on", anon, "", nil, "anonymous", "anonymous", 0},
		{"anonymous on, unknown user refused", anon, "x", []byte("y"), "", "", packet.BadUsernameOrPassword},
		{"custom default tenant", Config{UsersFile: uf, DefaultTenant: "internal"}, "gateway", []byte("gw-secret"), "internal", "password", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, tt.cfg)
			id, err := connect(s, "c1", tt.user, tt.pass)
			if tt.wantCode != 0 {
				if !errors.Is(err, tt.wantCode) {
					t.Fatalf("got %+v, %v; want %v", id, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Tenant != tt.wantTenant || id.Attrs[AttrMethod] != tt.wantMethod || id.ClientID != "c1" {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestClientIDInjection(t *testing.T) {
	roles := append(DefaultRoles(), Role{Name: "OWN", Activity: ActivityBoth, MaxQoS: 1, Topics: []string{"{tenantId}/dev/{clientId}/#"}})
	s := newService(t, Config{JWT: JWTConfig{Secret: testSecret}, Roles: roles})
	tok := []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("A", "OWN"), ""))
	for _, cid := range []string{"#", "+", "a/b", "a\x00"} {
		if _, err := connect(s, cid, "", tok); !errors.Is(err, packet.ClientIdentifierNotValid) {
			t.Errorf("client id %q: %v, want client identifier not valid", cid, err)
		}
	}
	// {username} is not substituted from a token client's CONNECT username.
	userRole := []Role{{Name: "MINE", Activity: ActivityBoth, Topics: []string{"users/{username}/#"}}}
	s2 := newService(t, Config{JWT: JWTConfig{Secret: testSecret}, Roles: userRole})
	if _, err := connect(s2, "c", "alice", []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("A", "MINE"), ""))); !errors.Is(err, packet.NotAuthorized) {
		t.Errorf("token client with a {username} role: %v, want not authorized", err)
	}
	id, err := connect(s, "dev1", "", tok)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CanSubscribe(id, "A/dev/dev1/#", 1).OK {
		t.Error("own subtree refused")
	}
	if s.CanSubscribe(id, "A/dev/+/#", 1).OK {
		t.Error("other devices granted")
	}
}

func TestAuthorizer(t *testing.T) {
	roles := append(DefaultRoles(), Role{Name: "RETAIN_PUB", Activity: ActivityPublish, MaxQoS: 2, Retain: true, Topics: []string{"{tenantId}/status/#"}})
	s := newService(t, Config{JWT: JWTConfig{Secret: testSecret}, Roles: roles})
	tok := func(tenant string, r ...string) []byte {
		return []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims(tenant, r...), ""))
	}
	cons, err := connect(s, "c", "", tok("A", "BUBBLE_UP_READ_CONSUMER", "BUBBLE_UP_ALARM_CONSUMER"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := connect(s, "g", "", tok("A", "GATEWAY_PUBLISHER", "RETAIN_PUB"))
	if err != nil {
		t.Fatal(err)
	}
	subs := []struct {
		filter    string
		qos, want byte
		ok        bool
	}{
		{"A/read/#", 2, 1, true},
		{"A/read/+/gas", 0, 0, true},
		{"A/alert/x", 1, 1, true},
		{"#", 0, 0, false},
		{"+/read/#", 0, 0, false},
		{"B/read/#", 0, 0, false},
		{"$share/g/#", 0, 0, false},
		{"$share/g/A/read/#", 2, 1, true},
		{"$SYS/#", 0, 0, false},
		{"A/#", 0, 0, false},
	}
	for i := 0; i < 2; i++ { // second pass from the cache
		for _, sb := range subs {
			dec := s.CanSubscribe(cons, sb.filter, sb.qos)
			got, ok := dec.MaxQoS, dec.OK
			if ok != sb.ok || got != sb.want {
				t.Errorf("CanSubscribe(%q, %d) = %d, %v; want %d, %v", sb.filter, sb.qos, got, ok, sb.want, sb.ok)
			}
		}
	}
	pubs := []struct {
		id     *broker.Identity
		topic  string
		qos    byte
		retain bool
		want   bool
	}{
		{cons, "A/read/x", 0, false, false},
		{gw, "A/read/m1/gas", 1, false, true},
		{gw, "A/read/m1/gas", 2, false, false}, // above max_qos 1
		{gw, "A/read/m1/gas", 0, true, false},  // retain not allowed
		{gw, "A/status/m1", 2, true, true},     // RETAIN_PUB allows both
		{gw, "B/read/m1/gas", 0, false, false},
		{gw, "$SYS/x", 0, false, false},
	}
	for i := 0; i < 2; i++ {
		for _, p := range pubs {
			if got := s.CanPublish(p.id, p.topic, p.qos, p.retain); got != p.want {
				t.Errorf("CanPublish(%s, %q, %d, %v) = %v", p.id.ClientID, p.topic, p.qos, p.retain, got)
			}
		}
	}
	// An identity not made by the Service is compiled on each call.
	foreign := &broker.Identity{Tenant: "A", ClientID: "x", Roles: []string{"BUBBLE_UP_READ_CONSUMER"}}
	if !s.CanSubscribe(foreign, "A/read/#", 1).OK {
		t.Error("foreign identity refused")
	}
	if s.CanSubscribe(&broker.Identity{Tenant: "A/#", Roles: []string{"BUBBLE_UP_READ_CONSUMER"}}, "A/#", 0).OK {
		t.Error("foreign identity with an unsafe tenant granted")
	}
}

func TestReloadAppliesNewRoles(t *testing.T) {
	cfg := Config{JWT: JWTConfig{Secret: testSecret}}
	s := newService(t, cfg)
	id, err := connect(s, "c", "", []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("A", "BUBBLE_UP_READ_CONSUMER"), "")))
	if err != nil {
		t.Fatal(err)
	}
	if !s.CanSubscribe(id, "A/read/x", 0).OK {
		t.Fatal("refused before reload")
	}
	cfg.Roles = []Role{{Name: "BUBBLE_UP_READ_CONSUMER", Activity: ActivitySubscribe, Topics: []string{"{tenantId}/read/public/#"}}}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if s.CanSubscribe(id, "A/read/x", 0).OK {
		t.Fatal("old role still applies after reload")
	}
	if !s.CanSubscribe(id, "A/read/public/x", 0).OK {
		t.Fatal("new role not applied")
	}
	bad := cfg
	bad.UsersFile = "/nonexistent"
	if err := s.Reload(bad); err == nil {
		t.Fatal("bad reload accepted")
	}
	if !s.CanSubscribe(id, "A/read/public/x", 0).OK {
		t.Fatal("failed reload changed the running configuration")
	}
}

func TestUsersFileReload(t *testing.T) {
	bc, _ := HashBcrypt([]byte("one"), 4)
	uf := writeUsers(t, fmt.Sprintf("  - {username: u, password: '%s'}\n", bc))
	cfg := Config{UsersFile: uf}
	s := newService(t, cfg)
	if _, err := connect(s, "c", "u", []byte("one")); err != nil {
		t.Fatal(err)
	}
	bc2, _ := HashBcrypt([]byte("two"), 4)
	if err := os.WriteFile(uf, []byte(fmt.Sprintf("users:\n  - {username: u, password: '%s'}\n", bc2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(s, "c", "u", []byte("one")); err == nil {
		t.Fatal("old password accepted after reload")
	}
	if _, err := connect(s, "c", "u", []byte("two")); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateAuthenticator(t *testing.T) {
	uf := writeUsers(t, "  - {username: meter-gw, tenant: A, roles: [GATEWAY_PUBLISHER]}\n")
	cfg := Config{UsersFile: uf, Certificate: Certificate{Enabled: true,
		Users: []CertUser{{Name: "bridge-1", Tenant: "B", Roles: []string{"GATEWAY_PUBLISHER"}}}}}
	s := newService(t, cfg)
	cert := func(cn string) []*x509.Certificate {
		return []*x509.Certificate{{Subject: pkix.Name{CommonName: cn, Organization: []string{"Petrel"}}}}
	}
	tests := []struct {
		name     string
		ci       broker.ConnectInfo
		tenant   string
		wantCode packet.ReasonCode
	}{
		{"users-file entry", broker.ConnectInfo{ClientID: "c", PeerCertificates: cert("meter-gw")}, "A", 0},
		{"config entry", broker.ConnectInfo{ClientID: "c", PeerCertificates: cert("bridge-1")}, "B", 0},
		{"listener named it", broker.ConnectInfo{ClientID: "c", Username: "bridge-1", HasUser: true, CertUsername: true, PeerCertificates: cert("ignored")}, "B", 0},
		{"unknown certificate", broker.ConnectInfo{ClientID: "c", PeerCertificates: cert("who")}, "", packet.NotAuthorized},
		{"no certificate", broker.ConnectInfo{ClientID: "c"}, "", packet.NotAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.Authenticate(context.Background(), &tt.ci)
			if tt.wantCode != 0 {
				if !errors.Is(err, tt.wantCode) {
					t.Fatalf("got %+v, %v; want %v", id, err, tt.wantCode)
				}
				return
			}
			if err != nil || id.Tenant != tt.tenant || id.Attrs[AttrMethod] != "certificate" {
				t.Fatalf("got %+v, %v", id, err)
			}
		})
	}
	off := newService(t, Config{UsersFile: uf})
	if _, err := off.Authenticate(context.Background(), &broker.ConnectInfo{ClientID: "c", PeerCertificates: cert("meter-gw")}); err == nil {
		t.Fatal("certificate accepted with the certificate authenticator off")
	}
}

func TestCacheEntryRemovedWithIdentity(t *testing.T) {
	s := newService(t, Config{Anonymous: Anonymous{Enabled: true, Roles: []string{"BUBBLE_UP_READ_CONSUMER"}}})
	count := func() int {
		n := 0
		s.cache.m.Range(func(any, any) bool { n++; return true })
		return n
	}
	func() {
		for i := 0; i < 10; i++ {
			id, err := connect(s, fmt.Sprint("c", i), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			s.CanSubscribe(id, "anonymous/read/#", 0)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for count() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache entries left after their identities were dropped", count())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcurrentDecisions(t *testing.T) {
	s := newService(t, Config{Anonymous: Anonymous{Enabled: true, Tenant: "A", Roles: []string{"GATEWAY_PUBLISHER"}}})
	id, err := connect(s, "c", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if !s.CanPublish(id, fmt.Sprintf("A/read/m%d/gas", i%700), 1, false) {
					t.Error("refused")
					return
				}
				if i%500 == 0 {
					_ = s.Reload(Config{Anonymous: Anonymous{Enabled: true, Tenant: "A", Roles: []string{"GATEWAY_PUBLISHER"}}})
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkCanPublishCached(b *testing.B) {
	s := newService(b, Config{Anonymous: Anonymous{Enabled: true, Tenant: "A", Roles: []string{"GATEWAY_PUBLISHER"}}})
	id, err := connect(s, "c", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !s.CanPublish(id, "A/read/00:11:22:33/gas", 1, false) {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkCanPublishUncached(b *testing.B) {
	s := newService(b, Config{Anonymous: Anonymous{Enabled: true, Tenant: "A", Roles: []string{"GATEWAY_PUBLISHER", "BUBBLE_UP_READ_CONSUMER"}}})
	id, err := connect(s, "c", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 4096)
	for i := range names {
		names[i] = fmt.Sprintf("A/read/%x/gas", i)
	}
	for i := range maxCachedTopics + 1 { // fill the cache
		s.CanPublish(id, fmt.Sprint("A/fill/", i), 0, false)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.CanPublish(id, names[i%len(names)], 1, false)
	}
}
