package listener

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/transport"
)

func TestLimitClosesConnectionsOverTheBound(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Limit(raw, 2, 0)
	defer l.Close()
	testLimitBound(t, raw, l, l.Accept)
}

// The bound holds for raw connections too (transport), which are counted
// without a wrapper: their release at close frees the slot.
func TestLimitBoundsRawConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw accept is Linux-only")
	}
	ln, err := Listen(context.Background(), Config{Type: TypeTCP, Address: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := Limit(ln, 2, 0)
	defer l.Close()
	a := transport.Of(l)
	if a == nil {
		t.Fatal("no raw Accepter for a plain TCP listener")
	}
	defer a.Close()
	accept := func() (net.Conn, error) {
		c, err := a.AcceptRaw()
		if err == nil {
			if _, ok := c.(transport.RawConn); !ok {
				t.Errorf("AcceptRaw returned %T, want a transport.RawConn", c)
			}
		}
		return c, err
	}
	testLimitBound(t, ln, l, accept)
}

func testLimitBound(t *testing.T, raw net.Listener, l *Limited, accept func() (net.Conn, error)) {
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Clients speak first: a listener from Listen hands a
		// connection over once its first bytes arrived.
		if _, err := c.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	// The third is closed by the listener: its read ends.
	_ = clients[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := clients[2].Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection over a bound of 2 was not closed")
	}
	if l.Refused() != 1 || l.Active() != 2 {
		t.Fatalf("refused %d active %d, want 1 and 2", l.Refused(), l.Active())
	}
	first.Close()
	first.Close() // a second close must not free a second slot
	if l.Active() != 1 {
		t.Fatalf("active %d after closing one, want 1", l.Active())
	}
	second.Close()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-accepted:
		a.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a connection within the bound was not accepted")
	}
}

func TestLimitPacesTheConnectionRate(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Limit(raw, 0, 20) // one every 50ms
	defer l.Close()
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	start := time.Now()
	for i := 0; i < 5; i++ {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Five connections at 20/s span at least four intervals.
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Fatalf("5 connections accepted in %v at a rate of 20/s", el)
	}
}
