package auth

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// recorder keeps every record at INFO and above, as text.
type recorder struct {
	mu    sync.Mutex
	lines []string // "LEVEL msg k=v ..."
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	s := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool { s += " " + a.Key + "=" + a.Value.String(); return true })
	r.mu.Lock()
	r.lines = append(r.lines, s)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) with(sub string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// TestAuthFailureLoggedRateLimitedWithoutSecret: a wrong password is an
// INFO line with method and reason and never the password; a guessing
// flood from one address is one line and one report per interval,
// whatever the refusals' codes (wrong password, then rate exceeded).
func TestAuthFailureLoggedRateLimitedWithoutSecret(t *testing.T) {
	const secret = "s3cret-guess-Xyz"
	users := writeUsers(t, "  - {username: meter, password: '"+bcryptHash(t, "right", 4)+"', tenant: A}\n")
	rec := &recorder{}
	s, err := New(Config{UsersFile: users}, Options{Logger: slog.New(rec), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	from := func(ip string) *broker.ConnectInfo {
		return &broker.ConnectInfo{ClientID: "m1", Username: "meter", HasUser: true, Password: []byte(secret), HasPass: true,
			RemoteAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	}
	for range 8 {
		if _, err := s.Authenticate(context.Background(), from("192.0.2.1")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := s.Authenticate(context.Background(), from("192.0.2.2")); err == nil {
		t.Fatal("wrong password accepted")
	}
	s.Close()
	got := rec.with("INFO authentication failed")
	if len(got) != 2 {
		t.Fatalf("%d lines for 9 failures from 2 addresses, want 2:\n%s", len(got), strings.Join(rec.lines, "\n"))
	}
	for _, want := range []string{"method=password", "username=meter", "remote=192.0.2.1:40000", "reason=", "code=", ratelog.AuditKey + "=" + AuditAuthFailure} {
		if !strings.Contains(got[0], want) {
			t.Errorf("line %q lacks %q", got[0], want)
		}
	}
	rep := rec.with(ratelog.SuppressedMsg)
	if len(rep) != 1 || !strings.Contains(rep[0], "count=7") || !strings.Contains(rep[0], "192.0.2.1") {
		t.Fatalf("reports %q, want one counting the 7 held back from 192.0.2.1", rep)
	}
	for _, l := range rec.lines {
		if strings.Contains(l, secret) {
			t.Fatalf("the password is in the log: %q", l)
		}
	}
}

// TestIdentityNamesPrincipalAndMethod: a password client's principal is
// its user; a token client's is the token endpoint's client_id (RFC 9068)
// or the token's jti, never the CONNECT username it chose.
func TestIdentityNamesPrincipalAndMethod(t *testing.T) {
	users := writeUsers(t, "  - {username: meter, password: '"+bcryptHash(t, "right", 4)+"', tenant: A}\n")
	s, err := New(Config{UsersFile: users, JWT: JWTConfig{Secret: testSecret}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := connect(s, "m1", "meter", []byte("right"))
	if err != nil || id.Method != "password" || id.Principal != "meter" {
		t.Fatalf("password client: %+v, %v; want method password, principal meter", id, err)
	}
	sg, err := NewSigner([]byte(testSecret), "HS256", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		clientID, want string
	}{{"tenant-a-app", "client_id:tenant-a-app"}, {"", "jti:"}} {
		tok, err := sg.Issue(Claims{Tenant: "A", ClientID: tc.clientID, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		id, err := connect(s, "app", "made-up-name", []byte(tok))
		if err != nil {
			t.Fatal(err)
		}
		if id.Method != "jwt" || !strings.HasPrefix(id.Principal, tc.want) || len(id.Principal) <= len("jti:") || strings.Contains(id.Principal, "made-up") {
			t.Errorf("token client %q: method %q principal %q, want jwt and %q...", tc.clientID, id.Method, id.Principal, tc.want)
		}
	}
}

// TestTokenRefusalsLoggedRateLimited: refused token requests from one
// address are one INFO line and a count, with the client-chosen client id
// cut short and never the secret.
func TestTokenRefusalsLoggedRateLimited(t *testing.T) {
	hash, _ := HashBcrypt([]byte("api-secret"), 4)
	sg, _ := NewSigner([]byte(testSecret), "", "")
	rec := &recorder{}
	h, err := NewTokenHandler(TokenEndpointConfig{Signer: sg, TTL: time.Hour, Rate: 1000, Burst: 1000,
		Clients: []APIClient{{ID: "app", SecretHash: hash, Tenant: "A"}}}, Options{Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 4000) // within the 8 KiB form limit
	for _, id := range []string{long, "app", "app", "app"} {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"Wr0ng-Api-Secret"}}
		r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.9:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			t.Fatal("wrong secret accepted")
		}
	}
	h.Close()
	got := rec.with("INFO auth: token request refused")
	if len(got) != 1 || !strings.Contains(got[0], "client_id="+strings.Repeat("x", maxPrincipalLen)+" ") ||
		strings.Contains(got[0], strings.Repeat("x", maxPrincipalLen+1)) {
		t.Fatalf("lines %q, want one with the client id cut to %d bytes", got, maxPrincipalLen)
	}
	if rep := rec.with(ratelog.SuppressedMsg); len(rep) != 1 || !strings.Contains(rep[0], "count=3") {
		t.Fatalf("reports %q, want one counting 3", rep)
	}
	for _, l := range rec.lines {
		if strings.Contains(l, "Wr0ng-Api-Secret") {
			t.Fatalf("the secret is in the log: %q", l)
		}
	}
}
