//go:build !linux

package broker

import (
	"errors"
	"net"
	"syscall"
)

// rawTCP finds no descriptor access outside Linux: connections are read
// and written through net.Conn, and the raw paths below are never taken.
func rawTCP(net.Conn) syscall.RawConn { return nil }

var errNoRaw = errors.New("broker: raw descriptor I/O is Linux-only")

type rawWrite struct{}

func (*rawWrite) write(syscall.RawConn, []byte) (int, error) { return 0, errNoRaw }

func (*rawWrite) writeAll(syscall.RawConn, []byte) error { return errNoRaw }

type rawRead struct{}

func (*rawRead) read(syscall.RawConn, []byte) (int, error) { return 0, errNoRaw }

func (*rawRead) tryRead(syscall.RawConn, []byte) (int, error) { return 0, errNoRaw }
