package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer issues JWTs that Petrel's JWT authenticator accepts.
type Signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
}

// LoadSigner reads a signing key file: a PEM private key (RSA, EC or
// Ed25519) or, otherwise, an HMAC secret (a trailing newline is dropped).
// alg "" picks the key's natural algorithm (HS256, RS256, ES256/384/512,
// EdDSA).
func LoadSigner(path, alg, kid string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	return NewSigner(data, alg, kid)
}

// NewSigner is LoadSigner on the key file's bytes.
func NewSigner(keyData []byte, alg, kid string) (*Signer, error) {
	var key, pub any
	if bytes.Contains(keyData, []byte("-----BEGIN")) {
		k, err := ParsePrivateKey(keyData)
		if err != nil {
			return nil, err
		}
		key, pub = k, k.Public()
	} else {
		secret := bytes.TrimRight(keyData, "\r\n")
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("auth: HMAC secret of %d bytes; want at least %d", len(secret), MinSecretLen)
		}
		key, pub = secret, secret
	}
	algs, err := algsFor(pub)
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = algs[0]
	}
	if !slices.Contains(algs, alg) {
		return nil, fmt.Errorf("auth: algorithm %s does not fit this key (want one of %v)", alg, algs)
	}
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		return nil, fmt.Errorf("auth: unknown algorithm %s", alg)
	}
	switch key.(type) {
	case []byte, *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("auth: unsupported signing key %T", key)
	}
	return &Signer{method: m, key: key, kid: kid}, nil
}

// Alg returns the signing algorithm.
func (s *Signer) Alg() string { return s.method.Alg() }

// Claims are what Issue puts in a token.
type Claims struct {
	Tenant     string   // sub
	ClientID   string   // client_id (RFC 9068): the API client it is issued to; "" for none
	Roles      []string // the scope claim
	TTL        time.Duration
	Issuer     string
	Audience   string
	ScopeClaim string // default mqttScope
	Now        time.Time
}

// Issue signs a token for c.
func (s *Signer) Issue(c Claims) (string, error) {
	if !safeLevel(c.Tenant) {
		return "", fmt.Errorf("auth: tenant %q must be one topic level without + # / or NUL", c.Tenant)
	}
	if c.TTL <= 0 {
		return "", errors.New("auth: token ttl must be positive")
	}
	if c.ScopeClaim == "" {
		c.ScopeClaim = "mqttScope"
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (it panics instead)
	roles := c.Roles
	if roles == nil {
		roles = []string{}
	}
	mc := jwt.MapClaims{
		"sub":        c.Tenant,
		c.ScopeClaim: roles,
		"iat":        c.Now.Unix(),
		"nbf":        c.Now.Unix(),
		"exp":        c.Now.Add(c.TTL).Unix(),
		"jti":        hex.EncodeToString(jti[:]),
	}
	if c.ClientID != "" {
		mc["client_id"] = c.ClientID
	}
	if c.Issuer != "" {
		mc["iss"] = c.Issuer
	}
	if c.Audience != "" {
		mc["aud"] = c.Audience
	}
	t := jwt.NewWithClaims(s.method, mc)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	out, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return out, nil
}
