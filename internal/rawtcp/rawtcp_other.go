//go:build !linux || 386

package rawtcp

import (
	"errors"
	"net"
)

// New has no raw accept outside Linux; Of returns nil there.
func New(*net.TCPListener) (Accepter, error) {
	return nil, errors.New("rawtcp: raw accept is Linux-only")
}
