package clientaddr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestForwarded(t *testing.T) {
	proxies, err := ParseTrustedProxies([]string{"127.0.0.1", "10.0.0.0/8", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"no header", nil, "127.0.0.1"},
		{"one entry", []string{"203.0.113.5"}, "203.0.113.5"},
		{"forged entries left of the client are not read", []string{"198.51.100.1, 203.0.113.5"}, "203.0.113.5"},
		{"chain of trusted proxies", []string{"203.0.113.5, 10.1.2.3", "10.9.9.9"}, "203.0.113.5"},
		{"port and brackets", []string{"[2001:db8::7]:4711"}, "2001:db8::7"},
		{"v4 with port", []string{"203.0.113.5:80"}, "203.0.113.5"},
		{"mapped", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"garbage stops at the proxy that added it", []string{"203.0.113.5, unknown, 10.0.0.1"}, "10.0.0.1"},
		{"all trusted: the farthest", []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2"},
		{"empty entry", []string{""}, "127.0.0.1"},
	}
	for _, tt := range tests {
		if got := Forwarded(peer, tt.values, proxies); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: %v, want %s", tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"localhost", "10.0.0.0/33", ""} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}

// FuzzForwarded: whatever the header, the client is the peer or
// an address of one of its entries, never an entry left of an untrusted
// one, and parsing never panics.
func FuzzForwarded(f *testing.F) {
	f.Add("127.0.0.1", "203.0.113.5, 10.0.0.1")
	f.Add("10.0.0.1", "[2001:db8::1]:80,,x")
	f.Add("[::1]:9", "::ffff:1.2.3.4%eth0, 1.2.3.4:5")
	proxies, _ := ParseTrustedProxies([]string{"127.0.0.0/8", "10.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, peerStr, header string) {
		peer, ok := ParseHostAddr(peerStr)
		if !ok {
			return
		}
		got := Forwarded(peer, []string{header}, proxies)
		if got == peer {
			return
		}
		entries := strings.Split(header, ",")
		for i := len(entries) - 1; i >= 0; i-- {
			a, ok := ParseHostAddr(strings.TrimSpace(entries[i]))
			if !ok {
				t.Fatalf("client %v found past an unparsable entry in %q", got, header)
			}
			if a == got {
				return
			}
			if !Trusted(proxies, a) {
				t.Fatalf("client %v is left of the untrusted %v in %q", got, a, header)
			}
		}
		t.Fatalf("client %v is in neither the peer %v nor %q", got, peer, header)
	})
}
