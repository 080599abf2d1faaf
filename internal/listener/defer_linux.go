package listener

import "syscall"

// deferAccept asks the kernel to hand over a connection only once its
// first bytes have arrived (TCP_DEFER_ACCEPT): an MQTT client speaks first
// (CONNECT, a TLS ClientHello, a WebSocket upgrade, a PROXY header), so the
// broker's first read of a new connection finds them instead of waiting
// for them in the netpoller. A client that sends nothing is handed over
// after deferAcceptSeconds (one SYN-ACK retransmission), and the connect
// timeout runs from then.
func deferAccept(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
	if err != nil {
		return err
	}
	return serr
}

const deferAcceptSeconds = 1
