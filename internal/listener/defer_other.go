//go:build !linux

package listener

import "syscall"

// deferAccept does nothing outside Linux (no TCP_DEFER_ACCEPT).
func deferAccept(_, _ string, _ syscall.RawConn) error { return nil }
