package auth

import (
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// hashCost is what verifying a password hash costs: its algorithm and
// parameters, without salt or key.
type hashCost struct {
	alg             string // "bcrypt" or "argon2id"
	bcryptCost      int
	time, memory    uint32 // argon2id passes and KiB
	threads         uint8  // argon2id lanes
	saltLen, keyLen int
}

// costOf returns the cost of verifying hash; ok is false for a hash of
// no known format.
func costOf(hash string) (c hashCost, ok bool) {
	switch {
	case isBcrypt(hash):
		n, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return c, false
		}
		return hashCost{alg: "bcrypt", bcryptCost: n}, true
	case strings.HasPrefix(hash, "$argon2id$"):
		p, key, err := parseArgon2id(hash)
		if err != nil {
			return c, false
		}
		return hashCost{alg: "argon2id", time: p.time, memory: p.memory, threads: p.threads,
			saltLen: len(p.salt), keyLen: len(key)}, true
	}
	return c, false
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// dummyHash returns the hash of a random secret nobody knows, costing
// what dummyCost(hashes) says. A client naming an unknown user or API
// client is checked against it, so the time of a refusal does not tell
// which names exist.
func dummyHash(hashes []string) (string, error) {
	c := dummyCost(hashes)
	secret := make([]byte, 32)
	randRead(secret)
	if c.alg == "argon2id" {
		salt := make([]byte, c.saltLen)
		randRead(salt)
		p := argonParams{salt: salt, time: c.time, memory: c.memory, threads: c.threads}
		return hashArgon2id(secret, p, uint32(c.keyLen)), nil
	}
	return HashBcrypt(secret, c.bcryptCost)
}

// dummyCost is the cost most of hashes have (the first to reach the
// highest count), or bcrypt at DefaultBcryptCost (petrel passwd's) when
// hashes has none.
func dummyCost(hashes []string) hashCost {
	best, bestN := hashCost{alg: "bcrypt", bcryptCost: DefaultBcryptCost}, 0
	counts := map[hashCost]int{}
	for _, h := range hashes {
		c, ok := costOf(h)
		if !ok {
			continue
		}
		counts[c]++
		if counts[c] > bestN {
			best, bestN = c, counts[c]
		}
	}
	return best
}
