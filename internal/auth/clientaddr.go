package auth

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses addresses and CIDR networks ("10.0.0.5",
// "10.0.0.0/8", "fd00::/8") of reverse proxies whose X-Forwarded-For a
// TokenHandler believes.
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
			return nil, fmt.Errorf("auth: trusted proxy %q is not an address or CIDR network", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusted reports whether a is in one of the networks.
func trusted(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address of the client behind r: the TCP peer,
// unless the peer is a trusted proxy; then the X-Forwarded-For entries
// are read from the right (the one the nearest proxy added) and the first
// address that is not a trusted proxy is the client. Entries left of it
// are the client's own to forge and never read. An entry that does not
// parse stops the walk at the proxy that added it. ok is false when the
// peer address does not parse either.
func clientAddr(r *http.Request, proxies []netip.Prefix) (netip.Addr, bool) {
	peer, ok := parseHostAddr(r.RemoteAddr)
	if !ok || !trusted(proxies, peer) {
		return peer, ok
	}
	return forwardedClient(peer, r.Header.Values("X-Forwarded-For"), proxies), true
}

// forwardedClient walks X-Forwarded-For header values from the right as
// clientAddr describes, starting from the trusted peer.
func forwardedClient(peer netip.Addr, values []string, proxies []netip.Prefix) netip.Addr {
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, ok := parseHostAddr(strings.TrimSpace(entries[j]))
			if !ok {
				return client
			}
			client = a
			if !trusted(proxies, a) {
				return client
			}
		}
	}
	return client
}

// parseHostAddr parses "1.2.3.4", "1.2.3.4:80", "::1", "[::1]" or
// "[::1]:80" into an unmapped address without zone.
func parseHostAddr(s string) (netip.Addr, bool) {
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
