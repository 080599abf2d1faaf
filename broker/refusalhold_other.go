//go:build !unix

package broker

// setRcvBuf leaves the receive buffer as it is where sockets are not
// unix ones.
func setRcvBuf(uintptr, int) error { return nil }
