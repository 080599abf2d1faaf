package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password hashing parameters.
const (
	// DefaultBcryptCost is the bcrypt cost petrel passwd uses.
	DefaultBcryptCost = 12
	// DefaultSCRAMIterations is the PBKDF2 iteration count of SCRAM
	// credentials (RFC 7677 asks for at least 4096).
	DefaultSCRAMIterations = 4096
	argonTime              = 3
	argonMemory            = 64 * 1024
	// argonThreads is one lane: a check is then one goroutine on one CPU,
	// which the check slots and the hashing CPU budget bound exactly,
	// while x/crypto/argon2 runs p lanes in parallel whatever the slots
	// say. Lanes shorten one check on idle CPUs but not the work per
	// guess (memory times passes), so p=1 costs an attacker the same.
	argonThreads = 1
	argonKeyLen  = 32
)

// Errors of the password functions.
var (
	ErrUnknownHash = errors.New("auth: unknown password hash format (want bcrypt $2a$/$2b$/$2y$ or $argon2id$)")
	ErrMismatch    = errors.New("auth: password does not match")
)

// HashBcrypt hashes password with bcrypt at cost (0: DefaultBcryptCost).
func HashBcrypt(password []byte, cost int) (string, error) {
	if cost == 0 {
		cost = DefaultBcryptCost
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", fmt.Errorf("auth: bcrypt: %w", err)
	}
	return string(h), nil
}

// HashArgon2id hashes password with argon2id in the PHC string format
// $argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>: 64 MiB, 3 passes, one
// lane (argonThreads says why).
func HashArgon2id(password []byte) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (it panics instead)
	return hashArgon2id(password, argonParams{salt: salt, time: argonTime, memory: argonMemory, threads: argonThreads}, argonKeyLen)
}

// hashArgon2id hashes password with the parameters and salt of p into a
// keyLen-byte key, in the PHC string format.
func hashArgon2id(password []byte, p argonParams, keyLen uint32) string {
	key := argon2.IDKey(password, p.salt, p.time, p.memory, p.threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(p.salt), b64.EncodeToString(key))
}

// CheckHash validates a hash's format without a password.
func CheckHash(hash string) error {
	switch {
	case isBcrypt(hash):
		_, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return fmt.Errorf("auth: bcrypt hash: %w", err)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, _, err := parseArgon2id(hash)
		return err
	}
	return ErrUnknownHash
}

// VerifyPassword compares password with a bcrypt or argon2id hash in
// constant time; it returns nil, ErrMismatch or a format error.
func VerifyPassword(hash string, password []byte) error {
	switch {
	case isBcrypt(hash):
		err := bcrypt.CompareHashAndPassword([]byte(hash), password)
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrMismatch
		}
		return err
	case strings.HasPrefix(hash, "$argon2id$"):
		p, want, err := parseArgon2id(hash)
		if err != nil {
			return err
		}
		got := argon2.IDKey(password, p.salt, p.time, p.memory, p.threads, uint32(len(want)))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			return ErrMismatch
		}
		return nil
	}
	return ErrUnknownHash
}

type argonParams struct {
	salt         []byte
	time, memory uint32
	threads      uint8
}

func parseArgon2id(hash string) (argonParams, []byte, error) {
	var p argonParams
	bad := fmt.Errorf("auth: malformed argon2id hash (want $argon2id$v=19$m=..,t=..,p=..$salt$hash)")
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, bad
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &threads); err != nil || threads == 0 || threads > 255 || p.time == 0 || p.memory == 0 || p.memory > 4<<20 {
		return p, nil, bad
	}
	p.threads = uint8(threads)
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return p, nil, bad
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return p, nil, bad
	}
	return p, key, nil
}

// SCRAMCredentials are the SCRAM-SHA-256 verifiers of a password (RFC
// 5802 section 3): the server keeps StoredKey and ServerKey, never the
// password.
type SCRAMCredentials struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// NewSCRAMCredentials derives SCRAM-SHA-256 credentials for password with
// a fresh salt (iterations 0: DefaultSCRAMIterations).
func NewSCRAMCredentials(password []byte, iterations int) (SCRAMCredentials, error) {
	if iterations == 0 {
		iterations = DefaultSCRAMIterations
	}
	if iterations < 4096 {
		return SCRAMCredentials{}, fmt.Errorf("auth: SCRAM iterations %d below 4096 (RFC 7677)", iterations)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (it panics instead)
	return scramDerive(password, salt, iterations)
}

func scramDerive(password, salt []byte, iterations int) (SCRAMCredentials, error) {
	salted, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, sha256.Size)
	if err != nil {
		return SCRAMCredentials{}, fmt.Errorf("auth: pbkdf2: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return SCRAMCredentials{Salt: salt, Iterations: iterations, StoredKey: stored[:],
		ServerKey: hmacSHA256(salted, []byte("Server Key"))}, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// String encodes the credentials for the users file, in PostgreSQL's
// format: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
func (c SCRAMCredentials) String() string {
	b64 := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", c.Iterations, b64.EncodeToString(c.Salt),
		b64.EncodeToString(c.StoredKey), b64.EncodeToString(c.ServerKey))
}

// ParseSCRAMCredentials decodes what SCRAMCredentials.String encodes.
func ParseSCRAMCredentials(s string) (SCRAMCredentials, error) {
	var c SCRAMCredentials
	bad := errors.New("auth: malformed SCRAM credentials (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, from petrel passwd --scram)")
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return c, bad
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return c, bad
	}
	iter, salt, ok1 := strings.Cut(params, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return c, bad
	}
	var err error
	if c.Iterations, err = strconv.Atoi(iter); err != nil || c.Iterations < 4096 || c.Iterations > 10_000_000 {
		return c, bad
	}
	b64 := base64.StdEncoding
	c.Salt, err = b64.DecodeString(salt)
	if err != nil || len(c.Salt) == 0 {
		return c, bad
	}
	if c.StoredKey, err = b64.DecodeString(stored); err != nil || len(c.StoredKey) != sha256.Size {
		return c, bad
	}
	if c.ServerKey, err = b64.DecodeString(server); err != nil || len(c.ServerKey) != sha256.Size {
		return c, bad
	}
	return c, nil
}
