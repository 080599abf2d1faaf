package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/clientaddr"
)

// TestWebSocketTrustedProxies: websocket.trusted_proxies becomes the
// listener's trusted proxies; a file that still says trust_forwarded_for
// without it keeps loading, with one warning naming the key and its line,
// and trusts loopback peers only; with both, the list wins and the old
// key is reported ignored. A bad entry is an error naming the key.
func TestWebSocketTrustedProxies(t *testing.T) {
	tests := []struct {
		name, ws string
		want     []netip.Prefix
		warn     string // substring of the one warning; "" for none
	}{
		{"list", "{trusted_proxies: [10.0.0.0/8, 192.0.2.7]}",
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}, ""},
		{"old key alone", "{trust_forwarded_for: true}", clientaddr.Loopback,
			"listeners[0].websocket.trust_forwarded_for (line 4): deprecated: X-Forwarded-For is now believed only from"},
		{"both", "{trust_forwarded_for: true, trusted_proxies: [10.0.0.0/8]}",
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "(line 4): deprecated and ignored"},
		{"old key off", "{trust_forwarded_for: false}", nil, ""},
		{"neither", "{path: /mqtt}", nil, ""},
	}
	for _, tt := range tests {
		c, err := Parse([]byte("listeners:\n  - type: ws\n    address: 127.0.0.1:8080\n    websocket: "+tt.ws+"\n"), nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.ListenerConfig(0).TrustedProxies; !slices.Equal(got, tt.want) {
			t.Errorf("%s: trusted proxies %v, want %v", tt.name, got, tt.want)
		}
		switch {
		case tt.warn == "" && len(c.Warnings) > 0:
			t.Errorf("%s: warnings %q", tt.name, c.Warnings)
		case tt.warn != "" && (len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], tt.warn)):
			t.Errorf("%s: warnings %q, want one with %q", tt.name, c.Warnings, tt.warn)
		}
	}
	_, err := Parse([]byte("listeners:\n  - type: ws\n    address: :8080\n    websocket: {trusted_proxies: [not-an-ip]}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "listeners[0].websocket.trusted_proxies") {
		t.Errorf("bad entry: %v", err)
	}
	_, err = Parse([]byte("listeners:\n  - type: tcp\n    address: :1883\n    websocket: {trusted_proxies: [10.0.0.1]}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "only for ws and wss") {
		t.Errorf("trusted_proxies on tcp: %v", err)
	}
}

// TestWebSocketUpgradeBounds: the websocket section's upgrade bounds reach
// the listener, negative ones and ones on a tcp listener are refused.
func TestWebSocketUpgradeBounds(t *testing.T) {
	c, err := Parse([]byte("listeners:\n  - type: ws\n    address: :8080\n    websocket: {upgrade_request_timeout: 2s, upgrade_timeout: 7s, max_upgrades: 300, max_upgrades_per_address: 9}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	lc := c.ListenerConfig(0)
	if lc.UpgradeRequestTimeout != 2*time.Second || lc.UpgradeTimeout != 7*time.Second || lc.MaxUpgrades != 300 || lc.MaxUpgradesPerAddress != 9 {
		t.Fatalf("listener config %+v", lc)
	}
	for _, bad := range []string{
		"  - type: ws\n    address: :8080\n    websocket: {max_upgrades: -1}\n",
		"  - type: tcp\n    address: :1883\n    websocket: {upgrade_timeout: 1s}\n",
	} {
		if _, err := Parse([]byte("listeners:\n"+bad), nil); err == nil || !strings.Contains(err.Error(), "listeners[0].websocket") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
