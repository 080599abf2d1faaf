//go:build !linux

package transport

import (
	"errors"
	"net"
)

var errNoRaw = errors.New("transport: raw descriptor I/O is Linux-only")

// Open makes no connection raw outside Linux: connections are read and
// written through net.Conn.
func (c *Conn) Open(net.Conn, *Parker, Owner) bool { return false }

// Read is never called here (Open made nothing raw).
func (c *Conn) Read([]byte) (int, error) { return 0, errNoRaw }

// TryRead is never called here.
func (c *Conn) TryRead([]byte) (int, error) { return 0, errNoRaw }

// Write is never called here.
func (c *Conn) Write([]byte) (int, error) { return 0, errNoRaw }

// WriteAll is never called here.
func (c *Conn) WriteAll([]byte) error { return errNoRaw }
