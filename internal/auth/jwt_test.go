package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestJWTAlgorithms(t *testing.T) {
	k := getKeys(t)
	tests := []struct {
		name string
		cfg  JWTConfig
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", JWTConfig{Secret: testSecret}, jwt.SigningMethodHS256, []byte(testSecret)},
		{"HS384", JWTConfig{Secret: testSecret}, jwt.SigningMethodHS384, []byte(testSecret)},
		{"HS512 secret file", JWTConfig{SecretFile: writeFile(t, "s", []byte(testSecret+"\n"))}, jwt.SigningMethodHS512, []byte(testSecret)},
		{"RS256", JWTConfig{PublicKeyFile: writeFile(t, "p.pem", k.rsaPEM)}, jwt.SigningMethodRS256, k.rsa},
		{"RS384", JWTConfig{PublicKeyFile: writeFile(t, "p.pem", k.rsaPEM)}, jwt.SigningMethodRS384, k.rsa},
		{"RS512 certificate", JWTConfig{PublicKeyFile: writeFile(t, "c.pem", k.rsaCert)}, jwt.SigningMethodRS512, k.rsa},
		{"PS256", JWTConfig{PublicKeyFile: writeFile(t, "p.pem", k.rsaPEM)}, jwt.SigningMethodPS256, k.rsa},
		{"ES256", JWTConfig{PublicKeyFile: writeFile(t, "e.pem", pubPEM(k.ec256.Public()))}, jwt.SigningMethodES256, k.ec256},
		{"ES384", JWTConfig{PublicKeyFile: writeFile(t, "e.pem", pubPEM(k.ec384.Public()))}, jwt.SigningMethodES384, k.ec384},
		{"EdDSA", JWTConfig{PublicKeyFile: writeFile(t, "d.pem", pubPEM(k.ed.Public()))}, jwt.SigningMethodEdDSA, k.ed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, Config{JWT: tt.cfg})
			id, err := connect(s, "c1", "", []byte(sign(t, tt.m, tt.key, claims("A", "BUBBLE_UP_READ_CONSUMER"), "")))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.Tenant != "A" || len(id.Roles) != 1 || id.Roles[0] != "BUBBLE_UP_READ_CONSUMER" || id.Attrs[AttrMethod] != "jwt" {
				t.Fatalf("identity %+v", id)
			}
			if !id.ExpiresAt.IsZero() {
				t.Fatalf("ExpiresAt set without disconnect_on_expiry")
			}
		})
	}
}

func TestJWTJWKS(t *testing.T) {
	k := getKeys(t)
	b64 := base64.RawURLEncoding
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64.EncodeToString(k.rsa.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64.EncodeToString(k.ec256.X.FillBytes(make([]byte, 32))), "y": b64.EncodeToString(k.ec256.Y.FillBytes(make([]byte, 32)))},
		{"kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": b64.EncodeToString([]byte(k.ed.Public().(ed25519.PublicKey)))},
		{"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64.EncodeToString([]byte(testSecret))},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
	}}
	data, _ := json.Marshal(jwks)
	s := newService(t, Config{JWT: JWTConfig{JWKSFile: writeFile(t, "jwks.json", data)}})
	c := claims("A", "BUBBLE_UP_READ_CONSUMER")
	ok := []struct {
		m   jwt.SigningMethod
		key any
		kid string
	}{
		{jwt.SigningMethodRS256, k.rsa, "r1"},
		{jwt.SigningMethodPS384, k.rsa, "r1"},
		{jwt.SigningMethodES256, k.ec256, "e1"},
		{jwt.SigningMethodEdDSA, k.ed, "d1"},
		{jwt.SigningMethodHS256, []byte(testSecret), "h1"},
		{jwt.SigningMethodRS256, k.rsa, ""}, // no kid: every key of the algorithm is tried
	}
	for _, o := range ok {
		if _, err := connect(s, "c", "", []byte(sign(t, o.m, o.key, c, o.kid))); err != nil {
			t.Errorf("%s kid %q refused: %v", o.m.Alg(), o.kid, err)
		}
	}
	bad := []struct {
		name string
		m    jwt.SigningMethod
		key  any
		kid  string
	}{
		{"unknown kid", jwt.SigningMethodRS256, k.rsa, "nope"},
		{"kid of another key", jwt.SigningMethodRS256, k.rsa, "e1"},
		{"HS384 on an HS256-only key", jwt.SigningMethodHS384, []byte(testSecret), "h1"},
	}
	for _, b := range bad {
		if _, err := connect(s, "c", "", []byte(sign(t, b.m, b.key, c, b.kid))); !errors.Is(err, packet.NotAuthorized) {
			t.Errorf("%s: %v, want not authorized", b.name, err)
		}
	}
}

// forge builds a token from raw parts, for attacks golang-jwt refuses to sign.
func forge(header, payload map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(payload)
	b64 := base64.RawURLEncoding
	return b64.EncodeToString(h) + "." + b64.EncodeToString(p) + "." + sig
}

func TestJWTRefusals(t *testing.T) {
	k := getKeys(t)
	rsaFile := writeFile(t, "p.pem", k.rsaPEM)
	hs := JWTConfig{Secret: testSecret}
	rs := JWTConfig{PublicKeyFile: rsaFile}
	good := claims("A", "BUBBLE_UP_READ_CONSUMER")
	with := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	hsTok := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "") }
	valid := hsTok(good)
	parts := strings.Split(valid, ".")
	tamperedPayload, _ := json.Marshal(with("sub", "B"))
	tests := []struct {
		name  string
		cfg   JWTConfig
		token string
		code  packet.ReasonCode
	}{
		{"alg none", hs, forge(map[string]any{"alg": "none", "typ": "JWT"}, good, ""), packet.NotAuthorized},
		{"alg none RS", rs, forge(map[string]any{"alg": "none"}, good, ""), packet.NotAuthorized},
		{"alg None case", hs, forge(map[string]any{"alg": "None"}, good, ""), packet.NotAuthorized},
		{"confused: HS256 signed with the RSA public key PEM", rs, sign(t, jwt.SigningMethodHS256, k.rsaPEM, good, ""), packet.NotAuthorized},
		{"confused: HS256 signed with the certificate PEM", JWTConfig{PublicKeyFile: writeFile(t, "c.pem", k.rsaCert)}, sign(t, jwt.SigningMethodHS256, k.rsaCert, good, ""), packet.NotAuthorized},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), good, ""), packet.NotAuthorized},
		{"bad signature", hs, parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), packet.NotAuthorized},
		{"tampered payload", hs, parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2], packet.NotAuthorized},
		{"other RSA key", rs, sign(t, jwt.SigningMethodRS256, mustRSA(t), good, ""), packet.NotAuthorized},
		{"unknown kid", JWTConfig{Secret: testSecret, KID: "k1"}, sign(t, jwt.SigningMethodHS256, []byte(testSecret), good, "k2"), packet.NotAuthorized},
		{"expired", hs, hsTok(with("exp", testNow.Add(-time.Minute).Unix())), packet.NotAuthorized},
		{"expired beyond skew", JWTConfig{Secret: testSecret, ClockSkew: 30 * time.Second}, hsTok(with("exp", testNow.Add(-31*time.Second).Unix())), packet.NotAuthorized},
		{"no exp", hs, hsTok(with("exp", nil)), packet.NotAuthorized},
		{"nbf in the future", hs, hsTok(with("nbf", testNow.Add(time.Minute).Unix())), packet.NotAuthorized},
		{"iat in the future", hs, hsTok(with("iat", testNow.Add(time.Minute).Unix())), packet.NotAuthorized},
		{"wrong issuer", JWTConfig{Secret: testSecret, Issuer: "petrel"}, hsTok(with("iss", "evil")), packet.NotAuthorized},
		{"missing issuer", JWTConfig{Secret: testSecret, Issuer: "petrel"}, valid, packet.NotAuthorized},
		{"wrong audience", JWTConfig{Secret: testSecret, Audience: "mqtt"}, hsTok(with("aud", "api")), packet.NotAuthorized},
		{"no sub", hs, hsTok(with("sub", nil)), packet.NotAuthorized},
		{"empty sub", hs, hsTok(with("sub", "")), packet.NotAuthorized},
		{"sub with #", hs, hsTok(with("sub", "A/#")), packet.NotAuthorized},
		{"sub with +", hs, hsTok(with("sub", "A+")), packet.NotAuthorized},
		{"sub wildcard level", hs, hsTok(with("sub", "+")), packet.NotAuthorized},
		{"sub with NUL", hs, hsTok(with("sub", "A\x00")), packet.NotAuthorized},
		{"scope not a list", hs, hsTok(with("mqttScope", 5)), packet.NotAuthorized},
		{"garbage that looks like a JWT", hs, "eyJhbGciOiJIUzI1NiJ9.!!!.xyz", packet.NotAuthorized},
		{"RS token, HS config", hs, sign(t, jwt.SigningMethodRS256, k.rsa, good, ""), packet.NotAuthorized},
		{"algorithm not allowed", JWTConfig{PublicKeyFile: rsaFile, Algorithms: []string{"PS256"}}, sign(t, jwt.SigningMethodRS256, k.rsa, good, ""), packet.NotAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, Config{JWT: tt.cfg})
			id, err := connect(s, "c1", "", []byte(tt.token))
			if !errors.Is(err, tt.code) {
				t.Fatalf("got %v, %v; want %v", id, err, tt.code)
			}
			if packet.ConnackReturnCode(tt.code) != 5 {
				t.Fatalf("3.x code %d, want 5", packet.ConnackReturnCode(tt.code))
			}
		})
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWTClockSkewAndExpiry(t *testing.T) {
	c := claims("A", "BUBBLE_UP_READ_CONSUMER")
	c["exp"] = testNow.Add(-10 * time.Second).Unix()
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "")
	s := newService(t, Config{JWT: JWTConfig{Secret: testSecret, ClockSkew: 30 * time.Second}})
	if _, err := connect(s, "c", "", []byte(tok)); err != nil {
		t.Fatalf("within skew: %v", err)
	}
	c = claims("A")
	s = newService(t, Config{JWT: JWTConfig{Secret: testSecret, DisconnectOnExpiry: true}})
	id, err := connect(s, "c", "user", []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "")))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(c["exp"].(int64), 0); !id.ExpiresAt.Equal(want) || id.Username != "" {
		t.Fatalf("ExpiresAt %v want %v; username %q (a token client's CONNECT username is not trusted)", id.ExpiresAt, want, id.Username)
	}
	// The scope may also be a space-separated string (OAuth style).
	c["mqttScope"] = "BUBBLE_UP_READ_CONSUMER BUBBLE_UP_ALARM_CONSUMER"
	id, err = connect(s, "c", "", []byte(sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "")))
	if err != nil || len(id.Roles) != 2 {
		t.Fatalf("string scope: %v %v", id, err)
	}
}

func TestJWTConfigErrors(t *testing.T) {
	k := getKeys(t)
	bad := []JWTConfig{
		{Secret: "short"},
		{Secret: testSecret, SecretFile: "x"},
		{PublicKeyFile: "/nonexistent"},
		{PublicKeyFile: writeFile(t, "x.pem", []byte("not pem"))},
		{JWKSFile: writeFile(t, "j.json", []byte(`{"keys":[]}`))},
		{JWKSFile: writeFile(t, "j.json", []byte(`{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}`))},
		{PublicKeyFile: writeFile(t, "p.pem", k.rsaPEM), Algorithms: []string{"HS256"}},
	}
	for i, c := range bad {
		if _, err := New(Config{JWT: c}, Options{Logger: quietLogger()}); err == nil {
			t.Errorf("config %d accepted: %+v", i, c)
		}
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for in, want := range map[string]bool{
		"eyJhbGciOiJIUzI1NiJ9.e30.c2ln": true,
		"password":                      false,
		"a.b.c":                         false,
		"eyJ0eXAiOiJKV1QifQ.e30.x":      false, // no alg
		fmt.Sprintf("%s.x.y", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))): true,
	} {
		if got := looksLikeJWT([]byte(in)); got != want {
			t.Errorf("looksLikeJWT(%q) = %v", in, got)
		}
	}
}
