package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// tokenServer serves a TokenHandler for clients app-a and app-b (secrets
// "secret-a", "secret-b") on a real socket, with a clock that never moves
// (no bucket refills).
func tokenServer(t *testing.T, proxies []string, checks PasswordChecks) (*TokenHandler, string) {
	t.Helper()
	sg, _ := NewSigner([]byte(testSecret), "", "")
	nets, err := ParseTrustedProxies(proxies)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	h, err := NewTokenHandler(TokenEndpointConfig{Signer: sg, Rate: 1, Burst: 2, TrustedProxies: nets, Clients: []APIClient{
		{ID: "app-a", SecretHash: bcryptHash(t, "secret-a", 4), Tenant: "A"},
		{ID: "app-b", SecretHash: bcryptHash(t, "secret-b", 4), Tenant: "B"},
	}}, Options{Logger: quietLogger(), Now: now, Checker: NewChecker(checks, now)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + TokenPath
}

// postToken posts a client-credentials request with the given
// X-Forwarded-For (none when "") and returns the status.
func postToken(t *testing.T, u, xff, id, secret string) int {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTokenEndpointBehindTrustedProxy: behind a trusted proxy (the test
// client on 127.0.0.1), clients named by different X-Forwarded-For
// addresses have separate request limits, so one client spending its
// burst does not get the others 429; entries a client prepends are not
// read.
func TestTokenEndpointBehindTrustedProxy(t *testing.T) {
	_, u := tokenServer(t, []string{"127.0.0.1"}, PasswordChecks{})
	for i := range 2 {
		if code := postToken(t, u, "203.0.113.1", "app-a", "secret-a"); code != 200 {
			t.Fatalf("request %d of 203.0.113.1: %d", i, code)
		}
	}
	if code := postToken(t, u, "203.0.113.1", "app-a", "secret-a"); code != 429 {
		t.Fatalf("203.0.113.1 past its burst: %d, want 429", code)
	}
	// A client prepending another address is still keyed on the address
	// the proxy saw.
	if code := postToken(t, u, "203.0.113.99, 203.0.113.1", "app-a", "secret-a"); code != 429 {
		t.Fatalf("forged X-Forwarded-For entry read: %d, want 429", code)
	}
	for _, xff := range []string{"203.0.113.2", "2001:db8::1", "203.0.113.99"} {
		if code := postToken(t, u, xff, "app-b", "secret-b"); code != 200 {
			t.Fatalf("client %s limited by another's requests: %d", xff, code)
		}
	}
}

// TestTokenEndpointUntrustedPeerForwardedForIgnored: from a peer that is
// not a trusted proxy, X-Forwarded-For is ignored: every request counts
// against the peer's own address.
func TestTokenEndpointUntrustedPeerForwardedForIgnored(t *testing.T) {
	_, u := tokenServer(t, []string{"10.0.0.0/8"}, PasswordChecks{})
	for i, xff := range []string{"203.0.113.1", "203.0.113.2"} {
		if code := postToken(t, u, xff, "app-a", "secret-a"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if code := postToken(t, u, "203.0.113.3", "app-a", "secret-a"); code != 429 {
		t.Fatalf("a new X-Forwarded-For from an untrusted peer got a fresh limit: %d, want 429", code)
	}
}

// TestTokenEndpointClientIDFailureLimit: failed secrets for one client
// id, spread over many addresses (each within its own request limit),
// reach the per-client limit: that id is refused with 429 before any hash
// is checked, even with the right secret; another client id is not.
func TestTokenEndpointClientIDFailureLimit(t *testing.T) {
	h, u := tokenServer(t, []string{"127.0.0.1"}, PasswordChecks{UserFailures: 3, AddressFailures: 100})
	for i := range 3 {
		if code := postToken(t, u, fmt.Sprintf("198.51.100.%d", i), "app-a", "guess"); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	checks := h.checks.Stats().Checks
	if code := postToken(t, u, "198.51.100.50", "app-a", "secret-a"); code != 429 {
		t.Fatalf("app-a past its failure limit: %d, want 429", code)
	}
	if st := h.checks.Stats(); st.Checks != checks || st.ThrottledName != 1 {
		t.Fatalf("a throttled request hashed or went uncounted: %+v", st)
	}
	if code := postToken(t, u, "198.51.100.51", "app-b", "secret-b"); code != 200 {
		t.Fatalf("another client id: %d", code)
	}
	// An unknown client id costs a dummy check like a known one.
	if code := postToken(t, u, "198.51.100.52", "app-z", "guess"); code != 401 {
		t.Fatalf("unknown client: %d", code)
	}
	if st := h.checks.Stats(); st.Dummy != 1 {
		t.Fatalf("unknown client id: %d dummy checks, want 1", st.Dummy)
	}
}

// TestTokenEndpointLimiterBounded: requests from more addresses than
// maxBuckets leave at most maxBuckets request limiters.
func TestTokenEndpointLimiterBounded(t *testing.T) {
	h, _ := tokenServer(t, nil, PasswordChecks{})
	for i := range maxBuckets + 100 {
		r := httptest.NewRequest(http.MethodPost, TokenPath, nil)
		r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1).String()
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if n := h.buckets.Len(); n != maxBuckets {
		t.Fatalf("%d limiters, want the bound %d", n, maxBuckets)
	}
}
