package listener

import (
	"net"
	"testing"
	"time"
)

// TestDeferAccept: a TCP listener hands over a connection once its client
// has spoken: a silent connection dialed first is passed over for one
// dialed after it that sent its first bytes, and is handed over itself as
// soon as it sends.
func TestDeferAccept(t *testing.T) {
	l := listen(t, Config{Name: "tcp", Type: "tcp"})
	a := startAccepting(t, l)
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	speaking, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer speaking.Close()
	if _, err := speaking.Write([]byte{0x10}); err != nil {
		t.Fatal(err)
	}
	// Both are established on the client's side; the kernel hands over
	// the silent one only after about deferAcceptSeconds.
	if c := a.next(t, 900*time.Millisecond); c.RemoteAddr().String() != speaking.LocalAddr().String() {
		t.Fatalf("accepted %v first, want the connection that spoke (%v)", c.RemoteAddr(), speaking.LocalAddr())
	}
	if _, err := silent.Write([]byte{0x10}); err != nil {
		t.Fatal(err)
	}
	if c := a.next(t, 5*time.Second); c.RemoteAddr().String() != silent.LocalAddr().String() {
		t.Fatalf("accepted %v, want %v", c.RemoteAddr(), silent.LocalAddr())
	}
}
