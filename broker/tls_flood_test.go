package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// partialClientHello announces a 512-byte ClientHello record and sends
// four bytes of it.
var partialClientHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}

// handshakeFlood opens burst connections to a TLS listener from several
// loopback addresses, each sending part of a ClientHello, then one more
// every interval, and keeps each open for lifetime (longer than the
// handshake timeout: the broker is the one to give up) unless the broker
// closes it first.
type handshakeFlood struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startHandshakeFlood(t *testing.T, addr string, srcs []string, burst int, interval, lifetime time.Duration) {
	t.Helper()
	f := &handshakeFlood{stop: make(chan struct{})}
	type held struct {
		c    net.Conn
		born time.Time
	}
	open := func(i int) (held, bool) {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcs[i%len(srcs)])}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return held{}, false // a dial the broker's backlog refused: the flood goes on
		}
		if _, err := c.Write(partialClientHello); err != nil {
			_ = c.Close() // closed by the broker already
			return held{}, false
		}
		return held{c, time.Now()}, true
	}
	f.wg.Go(func() {
		var conns []held
		defer func() {
			for _, h := range conns {
				_ = h.c.Close() // the flood is over
			}
		}()
		for i := range burst {
			if h, ok := open(i); ok {
				conns = append(conns, h)
			}
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := burst; ; i++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			for len(conns) > 0 && time.Since(conns[0].born) > lifetime {
				_ = conns[0].c.Close() // long closed by the broker
				conns = conns[1:]
			}
			if h, ok := open(i); ok {
				conns = append(conns, h)
			}
		}
	})
	t.Cleanup(func() {
		close(f.stop)
		f.wg.Wait()
	})
}

// An attacker holding more unfinished TLS handshakes open than the
// listener allows, from several addresses, and opening new ones, must not
// keep an honest client out: it completes its handshake and its MQTT
// CONNECT well within the handshake timeout (before eviction it waited for
// a slot, nearly the whole timeout).
func TestTLSHandshakeFloodLetsHonestClientsConnect(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the flood binds source addresses in 127.0.0.0/8, all loopback on Linux only")
	}
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srv, srvKey := newCert(t, ca, caKey, "localhost", false)
	writePEM(t, filepath.Join(dir, "srv.pem"), "CERTIFICATE", srv.Raw)
	writeKey(t, filepath.Join(dir, "srv.key"), srvKey)
	const (
		slots   = 100
		share   = 25 // 8 attacking addresses x 25 > 100 slots: slots are evicted
		timeout = 9 * time.Second
	)
	ln, err := listener.Listen(context.Background(), listener.Config{
		Name: "tls", Type: listener.TypeTLS, Address: "127.0.0.1:0",
		CertFile: filepath.Join(dir, "srv.pem"), KeyFile: filepath.Join(dir, "srv.key"),
		MaxHandshakes: slots, MaxHandshakesPerAddress: share, HandshakeTimeout: timeout,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(listener.Limit(ln, 0, 0)) }()
	t.Cleanup(func() {
		_ = b.Shutdown(context.Background()) // its error shows in Serve's
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})

	// 150 unfinished handshakes at once, then 30 new ones a second, each
	// held open longer than the handshake timeout (at most 450 sockets,
	// and the broker's ends), from 8 addresses; half of them from one,
	// which thus meets its share.
	var srcs []string
	for i := 3; i < 10; i++ {
		srcs = append(srcs, "127.0.0.2", fmt.Sprintf("127.0.0.%d", i))
	}
	startHandshakeFlood(t, ln.Addr().String(), srcs, 150, time.Second/30, timeout+time.Second)
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		st := ln.HandshakeStats()
		return st.Evicted > 0 && st.RefusedPerAddress > 0
	}, "the flood to fill every handshake slot and an address's share")

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for i := range 5 {
		time.Sleep(200 * time.Millisecond) // while the flood goes on
		start := time.Now()
		d := &net.Dialer{Timeout: timeout / 3} // the TLS handshake included
		nc, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("honest client %d during the flood: %v after %v", i, err, time.Since(start))
		}
		c := mqtttest.NewClient(t, nc, packet.V311)
		ack := c.Connect(&packet.Connect{ClientID: fmt.Sprintf("honest-%d", i), CleanStart: true, KeepAlive: 60})
		took := time.Since(start)
		if ack.ReasonCode != packet.Success {
			t.Fatalf("honest client %d: CONNACK %v", i, ack.ReasonCode)
		}
		if took > timeout/3 {
			t.Fatalf("honest client %d took %v to connect during the flood; want well under the handshake timeout %v", i, took, timeout)
		}
		t.Logf("honest client %d: TLS handshake and CONNACK in %v", i, took)
		_ = nc.Close() // done with it
	}
	st := ln.HandshakeStats()
	if st.InProgress > slots {
		t.Fatalf("%d handshakes in progress, above max_handshakes %d", st.InProgress, slots)
	}
	t.Logf("during the flood: %+v", st)
}
