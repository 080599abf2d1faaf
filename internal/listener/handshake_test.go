package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// partialHello is the start of a TLS record announcing a 512-byte
// ClientHello that never comes: what a slow-handshake attacker sends.
var partialHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}

// dialFrom opens a TCP connection to addr from the loopback address src
// (every 127.0.0.0/8 address is loopback on Linux) and writes first,
// closing it at cleanup.
func dialFrom(t *testing.T, src, addr string, first []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // test teardown
	if len(first) > 0 {
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// eventually polls cond every 10ms until it holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedByPeer reports, for each connection, whether the server closed
// it: a read ends with EOF or a reset within d; false when it times out.
// Bytes the server sent (its TLS flight) are skipped. The connections are
// read in parallel, so the whole check takes d at most.
func closedByPeer(t *testing.T, d time.Duration, conns ...net.Conn) []bool {
	t.Helper()
	closed := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			buf := make([]byte, 4096)
			for {
				_, err := c.Read(buf)
				if err == nil {
					continue
				}
				var ne net.Error
				closed[i] = !(errors.As(err, &ne) && ne.Timeout())
				return
			}
		})
	}
	wg.Wait()
	return closed
}

// capturedHello returns the bytes of a real TLS ClientHello record.
func capturedHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Fails once b closes: only its first flight is wanted.
		_ = tls.Client(a, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	_ = b.Close() // ends the client's handshake
	_ = a.Close()
	<-done
	return append(hdr, body...)
}

// When every handshake slot is held by a connection that never finishes
// its ClientHello, a new client does not wait for a slot: the oldest such
// connection is closed for it, and only that one.
func TestTLSEvictsOldestUnfinishedHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	const slots = 8
	// Both timeouts far beyond the test: only eviction can let the
	// client in (before eviction it waited for a slot up to a minute).
	l := tlsListener(t, ca, Config{MaxHandshakes: slots, MaxHandshakesPerAddress: slots,
		HandshakeTimeout: time.Minute, HelloTimeout: time.Minute})
	a := startAccepting(t, l)

	// The oldest has sent a whole ClientHello and stalls after it; the
	// others have sent part of one. The victim must be the oldest of
	// those that sent less, not the stalled one.
	var held []net.Conn
	stalled := dialFrom(t, "127.0.0.2", l.Addr().String(), capturedHello(t))
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stalled.Read(make([]byte, 1)); err != nil {
		t.Fatalf("no server flight after a complete ClientHello: %v", err)
	}
	for i := 1; i < slots; i++ {
		held = append(held, dialFrom(t, "127.0.0.2", l.Addr().String(), partialHello))
		eventually(t, 5*time.Second, "the server to take the connection", func() bool {
			return l.HandshakeStats().InProgress == i+1
		})
	}

	c, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("client at the handshake bound: %v", err)
	}
	defer c.Close()
	echo(t, a.next(t, 5*time.Second))
	roundTrip(t, c, "made room")

	st := l.HandshakeStats()
	if st.Evicted != 1 || st.InProgress != slots-1 {
		t.Fatalf("evicted %d, in progress %d; want 1 and %d", st.Evicted, st.InProgress, slots-1)
	}
	for i, closed := range closedByPeer(t, 300*time.Millisecond, append(held, stalled)...) {
		if closed != (i == 0) {
			t.Fatalf("held connection %d closed: %v; only the oldest partial one (0) should be", i, closed)
		}
	}
}

// A wss listener shares the TLS listener's handshakes: at the bound a
// WebSocket client gets in by eviction too.
func TestWSSEvictsUnfinishedHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	certFile, keyFile := ca.serverFiles(t, t.TempDir(), "server")
	const slots = 4
	l := listen(t, Config{Type: TypeWSS, CertFile: certFile, KeyFile: keyFile, MaxHandshakes: slots,
		MaxHandshakesPerAddress: slots, HandshakeTimeout: time.Minute, HelloTimeout: time.Minute})
	a := startAccepting(t, l)
	for i := range slots {
		dialFrom(t, "127.0.0.2", l.Addr().String(), partialHello)
		eventually(t, 5*time.Second, "the server to take the connection", func() bool {
			return l.HandshakeStats().InProgress == i+1
		})
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}}
	c, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("wss client at the handshake bound: %v", err)
	}
	s := a.next(t, 5*time.Second)
	wsWrite(t, c, websocket.MessageBinary, []byte{0xc0, 0x00})
	if got := readN(t, s, 2); string(got) != "\xc0\x00" {
		t.Fatalf("read % x", got)
	}
	if st := l.HandshakeStats(); st.Evicted != 1 {
		t.Fatalf("evicted %d, want 1", st.Evicted)
	}
}

// One address holds at most its share of unfinished handshakes; more from
// it are closed on arrival, and other addresses are unaffected.
func TestTLSHandshakesPerAddress(t *testing.T) {
	ca := newTestCA(t, "ca")
	const share = 4
	l := tlsListener(t, ca, Config{MaxHandshakes: 64, MaxHandshakesPerAddress: share,
		HandshakeTimeout: time.Minute, HelloTimeout: time.Minute})
	a := startAccepting(t, l)

	var flood []net.Conn
	for range 10 {
		flood = append(flood, dialFrom(t, "127.0.0.2", l.Addr().String(), partialHello))
	}
	eventually(t, 5*time.Second, "6 refusals", func() bool { return l.HandshakeStats().RefusedPerAddress == 6 })
	if n := l.HandshakeStats().InProgress; n != share {
		t.Fatalf("%d handshakes in progress from one address, want its share %d", n, share)
	}
	closed := 0
	var open []net.Conn
	for i, cl := range closedByPeer(t, 300*time.Millisecond, flood...) {
		if cl {
			closed++
		} else {
			open = append(open, flood[i])
		}
	}
	if closed != 10-share {
		t.Fatalf("%d of 10 connections from one address closed, want %d", closed, 10-share)
	}

	// Another address has a share of its own, and an honest client from a
	// third one gets in.
	for range share {
		dialFrom(t, "127.0.0.3", l.Addr().String(), partialHello)
	}
	eventually(t, 5*time.Second, "the second address's handshakes", func() bool { return l.HandshakeStats().InProgress == 2*share })
	c, err := dialTLS(l, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, a.next(t, 5*time.Second))
	roundTrip(t, c, "own share")

	// A share frees as its handshakes end.
	_ = open[0].Close()
	eventually(t, 5*time.Second, "the closed handshake to leave", func() bool { return l.HandshakeStats().InProgress == 2*share-1 })
	dialFrom(t, "127.0.0.2", l.Addr().String(), partialHello)
	eventually(t, 5*time.Second, "a new handshake from the first address", func() bool { return l.HandshakeStats().InProgress == 2*share })
	if st := l.HandshakeStats(); st.RefusedPerAddress != 6 || st.Evicted != 0 {
		t.Fatalf("refused %d, evicted %d; want 6 and 0", st.RefusedPerAddress, st.Evicted)
	}
}

// Behind a PROXY protocol load balancer every connection comes from the
// balancer: the share is counted by the address the header names (IPv6 by
// /64).
func TestTLSHandshakesPerAddressAfterProxyHeader(t *testing.T) {
	ca := newTestCA(t, "ca")
	l := tlsListener(t, ca, Config{ProxyProtocol: true, MaxHandshakes: 64, MaxHandshakesPerAddress: 3,
		HandshakeTimeout: time.Minute, HelloTimeout: time.Minute})
	startAccepting(t, l)
	header := func(src string) []byte {
		fam := "TCP4"
		dst := "192.0.2.99"
		if netip.MustParseAddr(src).Is6() {
			fam, dst = "TCP6", "2001:db8:ffff::1"
		}
		return append(fmt.Appendf(nil, "PROXY %s %s %s 40000 8883\r\n", fam, src, dst), partialHello...)
	}
	srcs := []string{
		"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1", // 2 over
		"192.0.2.2",                                                      // its own share
		"2001:db8::1", "2001:db8::2", "2001:db8::3:4", "2001:db8::5:6:7", // one /64, 1 over
		"2001:db8:0:1::1", // another /64
	}
	for _, src := range srcs {
		dialFrom(t, "", l.Addr().String(), header(src))
	}
	eventually(t, 5*time.Second, "every header read", func() bool {
		st := l.HandshakeStats()
		return st.RefusedPerAddress+uint64(st.InProgress) == uint64(len(srcs))
	})
	if st := l.HandshakeStats(); st.RefusedPerAddress != 3 || st.InProgress != 3+1+3+1 {
		t.Fatalf("refused %d, in progress %d; want 3 and 8", st.RefusedPerAddress, st.InProgress)
	}
}

// A connection that sends no complete ClientHello is closed at the short
// hello deadline; one that sent its ClientHello keeps the full handshake
// timeout.
func TestTLSHelloTimeout(t *testing.T) {
	ca := newTestCA(t, "ca")
	l := tlsListener(t, ca, Config{HelloTimeout: 300 * time.Millisecond, HandshakeTimeout: time.Minute})
	startAccepting(t, l)

	stalled := dialFrom(t, "", l.Addr().String(), capturedHello(t))
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stalled.Read(make([]byte, 1)); err != nil {
		t.Fatalf("no server flight after a complete ClientHello: %v", err)
	}
	silent := dialFrom(t, "", l.Addr().String(), nil)
	partial := dialFrom(t, "", l.Addr().String(), partialHello)
	// A silent connection reaches the listener about a second after it
	// opened (TCP_DEFER_ACCEPT); 10s is still far below the handshake
	// timeout of a minute, which is all that closed them before.
	if closed := closedByPeer(t, 10*time.Second, silent, partial); !closed[0] || !closed[1] {
		t.Fatalf("closed: silent %v, partial ClientHello %v; want both closed within 10s for a hello timeout of 300ms", closed[0], closed[1])
	}
	eventually(t, 5*time.Second, "both counted", func() bool { return l.HandshakeStats().HelloTimeouts == 2 })
	if st := l.HandshakeStats(); st.InProgress != 1 || st.HandshakeTimeouts != 0 {
		t.Fatalf("in progress %d, handshake timeouts %d; want the stalled handshake alone, and 0", st.InProgress, st.HandshakeTimeouts)
	}
	if closedByPeer(t, 100*time.Millisecond, stalled)[0] {
		t.Fatal("a connection past its ClientHello was closed at the hello deadline")
	}
}

// Refusals and evictions are logged at WARN in one line per interval with
// the counts, not one line per connection.
func TestTLSFloodReportIsAggregated(t *testing.T) {
	ca := newTestCA(t, "ca")
	rec := &recordHandler{}
	c := Config{Type: TypeTLS, Address: "127.0.0.1:0", MaxHandshakes: 64, MaxHandshakesPerAddress: 2,
		HandshakeTimeout: time.Minute, HelloTimeout: time.Minute}
	c.CertFile, c.KeyFile = ca.serverFiles(t, t.TempDir(), "server")
	l, err := Listen(context.Background(), c, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() }) // a second Close returns the first's result
	for range 12 {
		dialFrom(t, "127.0.0.2", l.Addr().String(), partialHello)
	}
	eventually(t, 5*time.Second, "10 refusals", func() bool { return l.HandshakeStats().RefusedPerAddress == 10 })
	if err := l.Close(); err != nil { // reports what is left
		t.Fatal(err)
	}
	lines, refused := rec.floodLines()
	if lines < 1 || lines > 2 || refused != 10 {
		t.Fatalf("%d WARN lines reporting %d refusals; want 1 or 2 lines (at once, then at the interval or close) with 10", lines, refused)
	}
}

// recordHandler keeps the log records it is given.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// floodLines returns the number of WARN flood reports and the refusals
// they add up to.
func (h *recordHandler) floodLines() (lines int, refused uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if r.Level != slog.LevelWarn {
			continue
		}
		lines++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "refused_per_address" {
				refused += a.Value.Uint64()
			}
			return true
		})
	}
	return lines, refused
}

func TestAddrKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string // "" = not counted
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		{&net.UnixAddr{Name: "/tmp/s", Net: "unix"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.addr != nil {
			name = tt.addr.String()
		}
		t.Run(name, func(t *testing.T) {
			key, ok := addrKey(tt.addr)
			got := ""
			if ok {
				got = key.String()
			}
			if got != tt.want {
				t.Fatalf("addrKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTLSHandshakeBoundsDefaults(t *testing.T) {
	tests := []struct {
		name                string
		c                   Config
		wantHello           time.Duration
		wantPerAddr, wantMx int
	}{
		{"defaults", Config{Type: TypeTLS}, DefaultHelloTimeout, DefaultMaxHandshakesPerAddress, DefaultMaxHandshakes},
		{"hello within handshake timeout", Config{Type: TypeTLS, HandshakeTimeout: time.Second}, time.Second, DefaultMaxHandshakesPerAddress, DefaultMaxHandshakes},
		{"per-address within max", Config{Type: TypeWSS, MaxHandshakes: 10, MaxHandshakesPerAddress: 50}, DefaultHelloTimeout, 10, 10},
		{"set", Config{Type: TypeTLS, HelloTimeout: time.Second, MaxHandshakesPerAddress: 5}, time.Second, 5, DefaultMaxHandshakes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c.withDefaults()
			if c.HelloTimeout != tt.wantHello || c.MaxHandshakesPerAddress != tt.wantPerAddr || c.MaxHandshakes != tt.wantMx {
				t.Fatalf("hello %v, per address %d, max %d; want %v, %d, %d", c.HelloTimeout, c.MaxHandshakesPerAddress, c.MaxHandshakes, tt.wantHello, tt.wantPerAddr, tt.wantMx)
			}
		})
	}
}
