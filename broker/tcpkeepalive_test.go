//go:build linux

package broker_test

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestTCPKeepAliveOnlyWithoutMQTTKeepAlive: the listener accepts without
// TCP keepalive (no setsockopt calls per connection), and the broker turns
// it on for a client that asked for no MQTT keepalive, which would
// otherwise never notice a dead peer.
func TestTCPKeepAliveOnlyWithoutMQTTKeepAlive(t *testing.T) {
	_, addr := mqtttest.StartOn(t, broker.Options{}, listener.Config{Name: "tcp", Type: "tcp"})
	for _, tc := range []struct {
		keepAlive uint16
		want      int
	}{{60, 0}, {0, 1}} {
		c := mqtttest.Dial(t, addr, packet.V311)
		ack := c.Connect(&packet.Connect{ClientID: "ka-" + strconv.Itoa(int(tc.keepAlive)), CleanStart: true, KeepAlive: tc.keepAlive})
		if ack.ReasonCode != packet.Success {
			t.Fatalf("CONNACK %v", ack.ReasonCode)
		}
		fd := serverSocket(t, c.Conn)
		got, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		if err != nil {
			t.Fatalf("getsockopt: %v", err)
		}
		if got != tc.want {
			t.Errorf("MQTT keepalive %d: broker's socket SO_KEEPALIVE = %d, want %d", tc.keepAlive, got, tc.want)
		}
	}
}

// serverSocket finds, among this process's descriptors, the broker's end
// of the client connection nc (the broker runs in the test process).
func serverSocket(t *testing.T, nc net.Conn) int {
	t.Helper()
	local := nc.LocalAddr().(*net.TCPAddr)
	remote := nc.RemoteAddr().(*net.TCPAddr)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue // not a socket
		}
		pa, err := syscall.Getpeername(fd)
		if err != nil {
			continue
		}
		s4, ok1 := sa.(*syscall.SockaddrInet4)
		p4, ok2 := pa.(*syscall.SockaddrInet4)
		if ok1 && ok2 && s4.Port == remote.Port && p4.Port == local.Port {
			return fd
		}
	}
	t.Fatalf("no broker socket for %v -> %v", local, remote)
	return -1
}
