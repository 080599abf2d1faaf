package cluster

import "testing"

// FuzzOwnerKey: the owners watch reads a session key back from a bucket
// key another node wrote (sessionOfOwnerKey). Every session key comes
// back from its bucket key, and a bucket key that decodes is the bucket
// key of the session it decodes to (one session, one key).
func FuzzOwnerKey(f *testing.F) {
	f.Add("tenant\x00client", "s")
	f.Add("", "sdGVuYW50AGNsaWVudA")
	f.Add("t\x00c/é #+", "x")
	f.Add("", "s\n")
	f.Add("", "sdA\r")
	f.Fuzz(func(t *testing.T, key, kvKey string) {
		back, ok := sessionOfOwnerKey(ownerKey(key))
		if !ok || back != key {
			t.Fatalf("session key %q: bucket key %q reads back as %q (%v)", key, ownerKey(key), back, ok)
		}
		if s, ok := sessionOfOwnerKey(kvKey); ok && ownerKey(s) != kvKey {
			t.Fatalf("bucket key %q decodes to session %q, whose bucket key is %q", kvKey, s, ownerKey(s))
		}
	})
}
