package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
)

// MinSecretLen is the shortest HMAC secret accepted (256 bits).
const MinSecretLen = 32

// verifyKey is one key a JWT may be signed with, and the algorithms it
// may verify: a key only ever verifies the algorithms of its own type, so
// an HS256 token is never checked against an RSA public key's bytes
// (algorithm confusion).
type verifyKey struct {
	kid  string
	key  any // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	algs []string
}

// algsFor returns the JWS algorithms a key of this type verifies.
func algsFor(key any) ([]string, error) {
	switch k := key.(type) {
	case []byte:
		return []string{"HS256", "HS384", "HS512"}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("auth: RSA key of %d bits; want at least 2048", k.N.BitLen())
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, errors.New("auth: unsupported elliptic curve")
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("auth: unsupported key type %T", key)
}

func newVerifyKey(kid string, key any, alg string) (verifyKey, error) {
	algs, err := algsFor(key)
	if err != nil {
		return verifyKey{}, err
	}
	if alg != "" {
		if !slices.Contains(algs, alg) {
			return verifyKey{}, fmt.Errorf("auth: key %q: algorithm %s does not fit a %T key", kid, alg, key)
		}
		algs = []string{alg}
	}
	return verifyKey{kid: kid, key: key, algs: algs}, nil
}

// ParsePublicKey reads a PEM public key (PKIX or PKCS#1) or X.509
// certificate (its public key is used).
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("auth: no PEM public key or certificate found")
		}
		switch b.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("auth: certificate: %w", err)
			}
			return c.PublicKey, nil
		}
	}
}

// ParsePrivateKey reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("auth: no PEM private key found")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("auth: private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("auth: unsupported private key %T", k)
		}
		return s, nil
	}
}

// readSecret reads an HMAC secret file; a trailing newline is not part of
// the secret.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: secret: %w", err)
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

// jwk is one JSON Web Key (RFC 7517, 7518, 8037).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

// parseJWKS reads a JSON Web Key Set; keys for encryption ("use":"enc")
// are skipped.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	b64 := base64.RawURLEncoding
	num := func(s string) (*big.Int, error) {
		b, err := b64.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, errors.New("bad base64url number")
		}
		return new(big.Int).SetBytes(b), nil
	}
	var out []verifyKey
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		var key any
		var err error
		switch k.Kty {
		case "RSA":
			var n, e *big.Int
			if n, err = num(k.N); err == nil {
				if e, err = num(k.E); err == nil && e.IsInt64() && e.Int64() > 1 && e.Int64() < 1<<31 {
					key = &rsa.PublicKey{N: n, E: int(e.Int64())}
				} else if err == nil {
					err = errors.New("bad exponent")
				}
			}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				err = fmt.Errorf("curve %q", k.Crv)
			}
			if err == nil {
				key, err = ecKey(curve, k.X, k.Y)
			}
		case "OKP":
			if k.Crv != "Ed25519" {
				err = fmt.Errorf("curve %q", k.Crv)
				break
			}
			var x []byte
			x, err = b64.DecodeString(k.X)
			if err == nil && len(x) != ed25519.PublicKeySize {
				err = errors.New("bad Ed25519 key size")
			}
			key = ed25519.PublicKey(x)
		case "oct":
			var s []byte
			s, err = b64.DecodeString(k.K)
			if err == nil && len(s) < MinSecretLen {
				err = fmt.Errorf("secret shorter than %d bytes", MinSecretLen)
			}
			key = s
		default:
			err = fmt.Errorf("key type %q", k.Kty)
		}
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		vk, err := newVerifyKey(k.Kid, key, k.Alg)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS key %d: %w", i, err)
		}
		out = append(out, vk)
	}
	if len(out) == 0 {
		return nil, errors.New("auth: JWKS has no signature keys")
	}
	return out, nil
}

func ecKey(curve elliptic.Curve, xs, ys string) (*ecdsa.PublicKey, error) {
	x, err := base64.RawURLEncoding.DecodeString(xs)
	if err != nil {
		return nil, err
	}
	y, err := base64.RawURLEncoding.DecodeString(ys)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(x) != size || len(y) != size {
		return nil, errors.New("bad EC coordinate size")
	}
	raw := append([]byte{4}, append(x, y...)...)
	return ecdsa.ParseUncompressedPublicKey(curve, raw)
}
