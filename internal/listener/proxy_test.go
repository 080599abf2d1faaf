package listener

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

func TestProxyProtocolGivesTheClientAddress(t *testing.T) {
	l, err := Listen(context.Background(), Config{Type: TypeTCP, Address: "127.0.0.1:0", ProxyProtocol: true, HandshakeTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v1 := []byte("PROXY TCP4 192.0.2.1 127.0.0.1 5555 1883\r\n")
	h2 := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
		SourceAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 4242}, DestinationAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1883}}
	v2, err := h2.Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header []byte
		want   string
	}{{"v1", v1, "192.0.2.1:5555"}, {"v2", v2, "[2001:db8::7]:4242"}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(append(tc.header, "MQTT"...)); err != nil {
				t.Fatal(err)
			}
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.RemoteAddr().String(); got != tc.want {
				t.Fatalf("remote address %s, want %s from the PROXY header", got, tc.want)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "MQTT" {
				t.Fatalf("bytes after the header: %q %v", buf, err)
			}
		})
	}
	t.Run("missing header refused", func(t *testing.T) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T'}); err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Read(make([]byte, 8)); err == nil {
			t.Fatal("a connection without a PROXY header was read from")
		}
	})
}
