package auth

import (
	"strings"
	"testing"
)

// TestHashArgon2idOneLane: petrel passwd --argon2id hashes with one lane
// (64 MiB, 3 passes, p=1), so that a check of it takes one check slot and
// is charged one CPU by the hashing budget; the hash verifies.
func TestHashArgon2idOneLane(t *testing.T) {
	h := HashArgon2id([]byte("pw"))
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Fatalf("hash %q, want the parameters m=65536,t=3,p=1", h)
	}
	c := NewChecker(PasswordChecks{MaxConcurrent: 4}, nil)
	c.procs = 4
	if slots, _ := c.weights(h); slots != 1 {
		t.Fatalf("a check of it takes %d slots, want 1", slots)
	}
	if got := c.cpuCost(h, 100); got != 100 {
		t.Fatalf("a check of it taking 100ns is charged %v, want 100ns", got)
	}
	if err := VerifyPassword(h, []byte("pw")); err != nil {
		t.Fatal(err)
	}
}
