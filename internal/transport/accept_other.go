//go:build !linux || 386

package transport

import (
	"errors"
	"net"
)

// New has no raw accept outside Linux; Of returns nil there.
func New(*net.TCPListener) (Accepter, error) {
	return nil, errors.New("transport: raw accept is Linux-only")
}
