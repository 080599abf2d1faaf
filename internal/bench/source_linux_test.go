package bench

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/petrel-mqtt/petrel/packet"
)

// TestConnsSpreadSources checks that the conns scenario's connections to
// an IPv4 loopback broker come from several 127.0.0.x source addresses,
// so that no one address's ephemeral port range is searched near full.
func TestConnsSpreadSources(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	sources := map[string]int{}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				if _, err := packet.ReadPacket(bufio.NewReader(nc), packet.V311, 0); err != nil {
					return
				}
				mu.Lock() // before the CONNACK: counted when Run returns
				sources[nc.RemoteAddr().(*net.TCPAddr).IP.String()]++
				mu.Unlock()
				if _, err := nc.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil { // CONNACK, accepted
					return
				}
				_, _ = nc.Read(make([]byte, 1)) // until the bench closes it
			}()
		}
	}()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	port, _ := strconv.Atoi(p)
	r, err := Run(context.Background(), Config{Scenario: "conns", Clients: 2 * connSources, Host: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if r.Connections != 2*connSources || len(r.Errors) > 0 {
		t.Fatalf("connections %d, errors %v", r.Connections, r.Errors)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sources) != connSources {
		t.Errorf("connections came from %d source addresses, want %d: %v", len(sources), connSources, sources)
	}
	for ip, n := range sources {
		if n != 2 {
			t.Errorf("%s: %d connections, want 2", ip, n)
		}
	}
}

func TestConnSourceOnlyForIPv4Loopback(t *testing.T) {
	var src sources
	for _, h := range []string{"::1", "localhost", "192.0.2.1"} {
		if a := src.addr(h, 3); a != nil {
			t.Errorf("%s: source %v, want the system's choice", h, a)
		}
	}
	if a := src.addr("127.0.0.1", 17); a == nil || a.IP.String() != "127.0.0.2" {
		t.Errorf("127.0.0.1, connection 17: source %v, want 127.0.0.2", a)
	}
	if !src.refuse(&net.OpError{Op: "dial", Err: syscall.EADDRNOTAVAIL}) {
		t.Fatal("EADDRNOTAVAIL not taken for a refused source address")
	}
	if a := src.addr("127.0.0.1", 17); a != nil {
		t.Errorf("source %v after a refusal, want the system's choice", a)
	}
	if new(sources).refuse(syscall.ECONNREFUSED) {
		t.Error("ECONNREFUSED taken for a refused source address")
	}
}
