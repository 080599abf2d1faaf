package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenLen bounds a JWT accepted in a CONNECT password.
const MaxTokenLen = 16 << 10

// JWTConfig configures JWT authentication. At least one of Secret,
// SecretFile, PublicKeyFile or JWKSFile enables it.
type JWTConfig struct {
	Secret        string // HS256/384/512 shared secret (prefer SecretFile)
	SecretFile    string
	PublicKeyFile string // PEM public key or X.509 certificate
	JWKSFile      string // JSON Web Key Set
	KID           string // key id of Secret/PublicKeyFile; tokens naming another kid are refused
	Algorithms    []string
	Issuer        string
	Audience      string
	ClockSkew     time.Duration
	TenantClaim   string // default "sub"
	ScopeClaim    string // default "mqttScope"
	// DisconnectOnExpiry sets Identity.ExpiresAt to the token's exp.
	DisconnectOnExpiry bool
}

// Enabled reports whether any key is configured.
func (c JWTConfig) Enabled() bool {
	return c.Secret != "" || c.SecretFile != "" || c.PublicKeyFile != "" || c.JWKSFile != ""
}

// verifier checks JWTs against a fixed set of keys.
type verifier struct {
	keys    []verifyKey
	parser  *jwt.Parser
	sigOnly *jwt.Parser // verifySignature
	cfg     JWTConfig
}

func newVerifier(c JWTConfig, now func() time.Time) (*verifier, error) {
	v := &verifier{cfg: c}
	if c.TenantClaim == "" {
		v.cfg.TenantClaim = "sub"
	}
	if c.ScopeClaim == "" {
		v.cfg.ScopeClaim = "mqttScope"
	}
	add := func(key any) error {
		k, err := newVerifyKey(c.KID, key, "")
		if err == nil {
			v.keys = append(v.keys, k)
		}
		return err
	}
	if c.Secret != "" && c.SecretFile != "" {
		return nil, errors.New("auth: jwt: secret and secret_file both set")
	}
	secret := []byte(c.Secret)
	if c.SecretFile != "" {
		var err error
		if secret, err = readSecret(c.SecretFile); err != nil {
			return nil, err
		}
	}
	if len(secret) > 0 {
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("auth: jwt secret of %d bytes; want at least %d", len(secret), MinSecretLen)
		}
		if err := add(secret); err != nil {
			return nil, err
		}
	}
	if c.PublicKeyFile != "" {
		data, err := os.ReadFile(c.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt public key: %w", err)
		}
		pk, err := ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt public key %s: %w", c.PublicKeyFile, err)
		}
		if err := add(pk); err != nil {
			return nil, fmt.Errorf("auth: jwt public key %s: %w", c.PublicKeyFile, err)
		}
	}
	if c.JWKSFile != "" {
		data, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: jwks: %w", err)
		}
		ks, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.JWKSFile, err)
		}
		v.keys = append(v.keys, ks...)
	}
	var algs []string
	for _, k := range v.keys {
		for _, a := range k.algs {
			if (len(c.Algorithms) == 0 || slices.Contains(c.Algorithms, a)) && !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
	}
	if len(algs) == 0 {
		return nil, errors.New("auth: jwt: no key for the allowed algorithms")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs), // never "none"
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.ClockSkew),
		jwt.WithTimeFunc(now),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	// Signature only: what a reload asks of a connected client's token,
	// whose claims were checked at CONNECT (its exp is watched there when
	// disconnect_on_expiry is set).
	v.sigOnly = jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithoutClaimsValidation())
	return v, nil
}

// verifySignature reports whether token's signature verifies under v's
// keys and allowed algorithms (kid rules included), its claims unchecked.
func (v *verifier) verifySignature(token string) error {
	_, err := v.sigOnly.Parse(token, v.keyfunc)
	return err
}

var errUnknownKID = errors.New("auth: token names an unknown key id")

// keyfunc picks the keys that may verify t: those of t's algorithm and, if
// t names a kid, only the key with that kid.
func (v *verifier) keyfunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, hasKID := t.Header["kid"].(string)
	if _, present := t.Header["kid"]; present && !hasKID {
		return nil, errUnknownKID
	}
	var set jwt.VerificationKeySet
	kidKnown := false
	for _, k := range v.keys {
		if hasKID && k.kid != kid {
			continue
		}
		kidKnown = true
		if slices.Contains(k.algs, alg) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if hasKID && !kidKnown {
		return nil, errUnknownKID
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("auth: no key verifies %s", alg)
	}
	return set, nil
}

// tokenClaims is what a verified token says.
type tokenClaims struct {
	tenant  string
	roles   []string
	expires time.Time
	// principal names who the token was issued to, for the logs: its
	// client_id claim (RFC 9068, set by the token endpoint), else its jti.
	principal string
}

// maxPrincipalLen bounds a token's principal as the logs show it.
const maxPrincipalLen = 128

// verify checks a token's signature and claims.
func (v *verifier) verify(token string) (tokenClaims, error) {
	var tc tokenClaims
	if len(token) > MaxTokenLen {
		return tc, fmt.Errorf("auth: token of %d bytes", len(token))
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyfunc); err != nil {
		return tc, err
	}
	t, ok := claims[v.cfg.TenantClaim].(string)
	if !ok || t == "" {
		return tc, fmt.Errorf("auth: token has no %q claim", v.cfg.TenantClaim)
	}
	tc.tenant = t
	switch s := claims[v.cfg.ScopeClaim].(type) {
	case []any:
		for _, r := range s {
			name, ok := r.(string)
			if !ok {
				return tc, fmt.Errorf("auth: %q claim holds a non-string", v.cfg.ScopeClaim)
			}
			tc.roles = append(tc.roles, name)
		}
	case string:
		tc.roles = strings.Fields(s)
	case nil:
	default:
		return tc, fmt.Errorf("auth: %q claim is not a list of role names", v.cfg.ScopeClaim)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return tc, errors.New("auth: token has no exp")
	}
	tc.expires = exp.Time
	for _, k := range []string{"client_id", "jti"} {
		if p, ok := claims[k].(string); ok && p != "" {
			if len(p) > maxPrincipalLen {
				p = p[:maxPrincipalLen]
			}
			tc.principal = k + ":" + p
			break
		}
	}
	return tc, nil
}

// looksLikeJWT reports whether a password is shaped like a JWS compact
// token: three base64url parts whose first is a JSON header with "alg".
func looksLikeJWT(p []byte) bool {
	if bytes.Count(p, []byte{'.'}) != 2 {
		return false
	}
	head, _, _ := bytes.Cut(p, []byte{'.'})
	if len(head) == 0 || len(head) > 1024 {
		return false
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(head)))
	n, err := base64.RawURLEncoding.Decode(raw, head)
	if err != nil {
		return false
	}
	var h map[string]any
	if json.Unmarshal(raw[:n], &h) != nil {
		return false
	}
	_, ok := h["alg"]
	return ok
}
