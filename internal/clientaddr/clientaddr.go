// Package clientaddr finds the address of the client behind an HTTP
// request that may have come through reverse proxies: the TCP peer,
// unless the peer is a trusted proxy, whose X-Forwarded-For header is then
// read from the right. The token endpoint and the WebSocket listeners
// share it. It knows nothing of MQTT.
package clientaddr

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Loopback is what a WebSocket listener trusts when its configuration
// still says trust_forwarded_for without a trusted_proxies list: a proxy
// on the same host.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ParseTrustedProxies parses addresses and CIDR networks ("10.0.0.5",
// "10.0.0.0/8", "fd00::/8") of reverse proxies whose X-Forwarded-For is
// believed.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not an address or CIDR network", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Trusted reports whether a is in one of the networks.
func Trusted(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// FromRequest returns the address of the client behind r: the TCP peer,
// unless the peer is a trusted proxy; then the X-Forwarded-For entries
// are read from the right (the one the nearest proxy added) and the first
// address that is not a trusted proxy is the client. Entries left of it
// are the client's own to forge and never read. An entry that does not
// parse stops the walk at the proxy that added it. ok is false when the
// peer address does not parse either.
func FromRequest(r *http.Request, proxies []netip.Prefix) (netip.Addr, bool) {
	peer, ok := ParseHostAddr(r.RemoteAddr)
	if !ok || !Trusted(proxies, peer) {
		return peer, ok
	}
	return Forwarded(peer, r.Header.Values("X-Forwarded-For"), proxies), true
}

// Forwarded walks X-Forwarded-For header values from the right as
// FromRequest describes, starting from the trusted peer.
func Forwarded(peer netip.Addr, values []string, proxies []netip.Prefix) netip.Addr {
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, ok := ParseHostAddr(strings.TrimSpace(entries[j]))
			if !ok {
				return client
			}
			client = a
			if !Trusted(proxies, a) {
				return client
			}
		}
	}
	return client
}

// ParseHostAddr parses "1.2.3.4", "1.2.3.4:80", "::1", "[::1]" or
// "[::1]:80" into an unmapped address without zone.
func ParseHostAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
