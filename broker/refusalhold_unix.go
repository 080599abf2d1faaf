//go:build unix

package broker

import "syscall"

// setRcvBuf sets the socket's receive buffer size (SO_RCVBUF).
func setRcvBuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
