package auth

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/petrel-mqtt/petrel/internal/clientaddr"
)

// ParseTrustedProxies parses addresses and CIDR networks ("10.0.0.5",
// "10.0.0.0/8", "fd00::/8") of reverse proxies whose X-Forwarded-For a
// TokenHandler believes (clientaddr.ParseTrustedProxies).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	p, err := clientaddr.ParseTrustedProxies(list)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return p, nil
}

// clientAddr returns the address of the client behind r
// (clientaddr.FromRequest).
func clientAddr(r *http.Request, proxies []netip.Prefix) (netip.Addr, bool) {
	return clientaddr.FromRequest(r, proxies)
}
