package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSignerIssuesVerifiableTokens(t *testing.T) {
	k := getKeys(t)
	tests := []struct {
		name    string
		keyData []byte
		alg     string
		verify  JWTConfig
		wantAlg string
	}{
		{"secret", []byte(testSecret + "\n"), "", JWTConfig{Secret: testSecret}, "HS256"},
		{"secret HS512", []byte(testSecret), "HS512", JWTConfig{Secret: testSecret}, "HS512"},
		{"rsa", privPEM(k.rsa), "", JWTConfig{PublicKeyFile: writeFile(t, "p", k.rsaPEM)}, "RS256"},
		{"rsa PS256", privPEM(k.rsa), "PS256", JWTConfig{PublicKeyFile: writeFile(t, "p", k.rsaPEM)}, "PS256"},
		{"ec", privPEM(k.ec256), "", JWTConfig{PublicKeyFile: writeFile(t, "p", pubPEM(k.ec256.Public()))}, "ES256"},
		{"ed25519", privPEM(k.ed), "EdDSA", JWTConfig{PublicKeyFile: writeFile(t, "p", pubPEM(k.ed.Public())), KID: "k1"}, "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sg, err := NewSigner(tt.keyData, tt.alg, tt.verify.KID)
			if err != nil {
				t.Fatal(err)
			}
			if sg.Alg() != tt.wantAlg {
				t.Fatalf("alg %s", sg.Alg())
			}
			tok, err := sg.Issue(Claims{Tenant: "A", Roles: []string{"BUBBLE_UP_READ_CONSUMER"}, TTL: time.Hour, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			s := newService(t, Config{JWT: tt.verify})
			id, err := connect(s, "c", "", []byte(tok))
			if err != nil || id.Tenant != "A" || id.Roles[0] != "BUBBLE_UP_READ_CONSUMER" {
				t.Fatalf("%+v %v", id, err)
			}
		})
	}
	if _, err := NewSigner([]byte("short"), "", ""); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewSigner(privPEM(k.rsa), "HS256", ""); err == nil {
		t.Error("HS256 with an RSA key accepted")
	}
	sg, _ := NewSigner([]byte(testSecret), "", "")
	for _, c := range []Claims{{Tenant: "A/#", TTL: time.Hour}, {Tenant: "", TTL: time.Hour}, {Tenant: "A"}} {
		if _, err := sg.Issue(c); err == nil {
			t.Errorf("Issue(%+v) accepted", c)
		}
	}
}

func TestTokenEndpoint(t *testing.T) {
	hash, _ := HashBcrypt([]byte("api-secret"), 4)
	sg, _ := NewSigner([]byte(testSecret), "", "")
	now := testNow
	h, err := NewTokenHandler(TokenEndpointConfig{
		Signer: sg, TTL: 30 * time.Minute, Rate: 1, Burst: 3,
		Clients: []APIClient{{ID: "app-a", SecretHash: hash, Tenant: "A", Roles: []string{"BUBBLE_UP_READ_CONSUMER", "BUBBLE_UP_ALARM_CONSUMER"}}},
	}, Options{Logger: quietLogger(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, Config{JWT: JWTConfig{Secret: testSecret}})
	post := func(remote string, form url.Values, basic bool) *httptest.ResponseRecorder {
		if basic {
			id, sec := form.Get("client_id"), form.Get("client_secret")
			form.Del("client_id")
			form.Del("client_secret")
			defer form.Set("client_id", id)
			defer form.Set("client_secret", sec)
			r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
			r.RemoteAddr = remote
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	good := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-a"}, "client_secret": {"api-secret"}}
	}
	for i, basic := range []bool{false, true} {
		w := post("10.0.0.1:1000", good(), basic)
		if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("basic=%v: %d %s", basic, w.Code, w.Body)
		}
		var resp map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if resp["token_type"] != "Bearer" || resp["expires_in"] != float64(1800) {
			t.Fatalf("response %v", resp)
		}
		id, err := connect(svc, "c", "", []byte(resp["access_token"].(string)))
		if err != nil || id.Tenant != "A" || len(id.Roles) != 2 {
			t.Fatalf("token %d: %+v %v", i, id, err)
		}
	}
	scoped := good()
	scoped.Set("scope", "BUBBLE_UP_ALARM_CONSUMER")
	if w := post("10.0.0.2:1", scoped, false); w.Code != 200 {
		t.Fatalf("scoped: %d %s", w.Code, w.Body)
	}

	errs := []struct {
		name   string
		mutate func(url.Values)
		code   int
		err    string
	}{
		{"wrong secret", func(v url.Values) { v.Set("client_secret", "x") }, 401, "invalid_client"},
		{"unknown client", func(v url.Values) { v.Set("client_id", "app-z") }, 401, "invalid_client"},
		{"no client", func(v url.Values) { v.Del("client_id") }, 401, "invalid_client"},
		{"password grant", func(v url.Values) { v.Set("grant_type", "password") }, 400, "unsupported_grant_type"},
		{"scope not granted", func(v url.Values) { v.Set("scope", "GATEWAY_PUBLISHER") }, 400, "invalid_scope"},
	}
	for i, e := range errs {
		v := good()
		e.mutate(v)
		w := post("10.1.0."+string(rune('1'+i))+":1", v, false)
		if w.Code != e.code || !strings.Contains(w.Body.String(), e.err) {
			t.Errorf("%s: %d %s", e.name, w.Code, w.Body)
		}
	}
	r := httptest.NewRequest(http.MethodGet, TokenPath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 405 {
		t.Errorf("GET: %d", w.Code)
	}

	// Rate limit: a burst of 3 per address, then 429 until tokens refill.
	for i := 0; i < 3; i++ {
		if w := post("10.9.9.9:1", good(), false); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	if w := post("10.9.9.9:2", good(), false); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d", w.Code)
	}
	if w := post("10.9.9.8:1", good(), false); w.Code != 200 {
		t.Fatalf("another address limited: %d", w.Code)
	}
	now = now.Add(2 * time.Second)
	if w := post("10.9.9.9:3", good(), false); w.Code != 200 {
		t.Fatalf("after refill: %d", w.Code)
	}
}
