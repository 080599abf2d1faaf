package bench

import (
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
)

// connSources is how many loopback source addresses the conns scenario
// spreads its connections over.
//
// With one source address, every connect to the broker's address and port
// draws a local port from one ephemeral range (32768-60999: 28,232 ports),
// and Linux's search for a free one prefers one parity and walks it in
// order: once its 14k ports are in use, each connect walks all of them
// before trying the other half. At 19,000 connections that search, not the
// broker, set the rate, the same for every broker. Sixteen source addresses
// keep each one's share of 19,000 connections under 1,200, and the port
// search short.
const connSources = 16

// sources picks the source addresses of one conns run's connections. The
// zero value spreads them (on Linux) until the system refuses a 127.0.0.x
// source address (EADDRNOTAVAIL); from then on the connections come from
// the system's choice.
type sources struct{ refused atomic.Bool }

// addr returns the source address for the i-th connection to host: one
// of 127.0.0.1 to 127.0.0.16 when host is an IPv4 loopback address on
// Linux, where the whole of 127.0.0.0/8 is the loopback interface's; nil
// (the system's choice) otherwise.
func (s *sources) addr(host string, i int) *net.TCPAddr {
	if runtime.GOOS != "linux" || s.refused.Load() {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%connSources))}
}

// refuse reports whether err is the system refusing a source address,
// and stops spreading if so.
func (s *sources) refuse(err error) bool {
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		s.refused.Store(true)
		return true
	}
	return false
}
