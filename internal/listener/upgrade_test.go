package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestWSUpgradeFloodEvictsOldest: more silent connections than
// max_upgrades are held open on a ws listener; the oldest are closed to
// make room (counted), at most max_upgrades stay pending, and an honest
// WebSocket client still upgrades while the flood is held.
func TestWSUpgradeFloodEvictsOldest(t *testing.T) {
	const slots, flood = 8, 30
	l := listen(t, Config{Type: "ws", MaxUpgrades: slots, MaxUpgradesPerAddress: slots, // equal: no share per address
		UpgradeRequestTimeout: 30 * time.Second, UpgradeTimeout: 30 * time.Second})
	a := startAccepting(t, l)
	conns := make([]net.Conn, flood)
	for i := range conns {
		conns[i] = dialFrom(t, "", l.Addr().String(), nil)
	}
	eventually(t, 10*time.Second, "the oldest silent connections evicted", func() bool { return l.UpgradeStats().Evicted == flood-slots })
	if st := l.UpgradeStats(); st.InProgress != slots {
		t.Fatalf("%d upgrades pending, want max_upgrades %d: %+v", st.InProgress, slots, st)
	}
	if _, _, err := wsDial(t, l, "/mqtt", nil); err != nil {
		t.Fatalf("honest client during the flood: %v", err)
	}
	a.next(t, 5*time.Second)
	if st := l.UpgradeStats(); st.InProgress > slots {
		t.Fatalf("%d pending after the honest upgrade", st.InProgress)
	}
	// The evicted were closed by the listener (the honest client's
	// arrival evicted one more).
	n := 0
	for _, closed := range closedByPeer(t, 2*time.Second, conns...) {
		if closed {
			n++
		}
	}
	if n != flood-slots+1 {
		t.Fatalf("%d silent connections closed, want %d", n, flood-slots+1)
	}
}

// TestWSUpgradesPerAddress: one address holds at most
// max_upgrades_per_address pending upgrades, the next closed on arrival
// and counted; another address still upgrades; a trusted proxy's peer
// address is not counted (its clients are behind it).
func TestWSUpgradesPerAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("binds source addresses in 127.0.0.0/8, all loopback on Linux only")
	}
	l := listen(t, Config{Type: "ws", MaxUpgrades: 100, MaxUpgradesPerAddress: 4})
	a := startAccepting(t, l)
	for range 10 {
		dialFrom(t, "127.0.0.2", l.Addr().String(), nil)
	}
	eventually(t, 10*time.Second, "six refused", func() bool { return l.UpgradeStats().RefusedPerAddress == 6 })
	if st := l.UpgradeStats(); st.InProgress != 4 || st.Evicted != 0 {
		t.Fatalf("%+v, want 4 pending, none evicted", st)
	}
	// 127.0.0.1 has its own share.
	if _, _, err := wsDial(t, l, "/mqtt", nil); err != nil {
		t.Fatalf("another address: %v", err)
	}
	a.next(t, 5*time.Second)

	proxied := listen(t, Config{Type: "ws", MaxUpgrades: 100, MaxUpgradesPerAddress: 2,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	for range 5 {
		dialFrom(t, "127.0.0.2", proxied.Addr().String(), nil)
	}
	eventually(t, 10*time.Second, "five pending from the trusted proxy", func() bool { return proxied.UpgradeStats().InProgress == 5 })
	if st := proxied.UpgradeStats(); st.RefusedPerAddress != 0 {
		t.Fatalf("trusted proxy refused per address: %+v", st)
	}
}

// TestWSUpgradeRequestDeadline: a client that dribbles its upgrade request
// (a header line every 100 ms) is closed at upgrade_request_timeout,
// counted, however it keeps sending; one that never completes the upgrade
// (a request the server answers 404, then silence) cannot keep the
// connection with more requests: keep-alives are off.
func TestWSUpgradeRequestDeadline(t *testing.T) {
	l := listen(t, Config{Type: "ws", UpgradeRequestTimeout: 300 * time.Millisecond, UpgradeTimeout: 5 * time.Second})
	c := dialFrom(t, "", l.Addr().String(), nil)
	if _, err := io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for i := 0; i < 100; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(c, "X-Dribble: a\r\n"); err != nil {
				return // closed by the listener
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("a dribbled request kept its connection for 10 s")
	}
	eventually(t, 10*time.Second, "the request timeout counted", func() bool { return l.UpgradeStats().RequestTimeouts == 1 })

	c = dialFrom(t, "", l.Addr().String(), nil)
	if _, err := io.WriteString(c, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // only the status matters
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !closedByPeer(t, 5*time.Second, c)[0] {
		t.Fatal("the connection stayed open for another request")
	}
	eventually(t, 10*time.Second, "nothing pending", func() bool { return l.UpgradeStats().InProgress == 0 })
}

// TestWSSUpgradeBoundsAfterHandshake: on wss the bounds apply after the
// TLS handshake: TLS clients that complete the handshake and send no
// request are evicted at max_upgrades, and an honest client upgrades.
func TestWSSUpgradeBoundsAfterHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	certFile, keyFile := ca.serverFiles(t, t.TempDir(), "server")
	l := listen(t, Config{Type: "wss", CertFile: certFile, KeyFile: keyFile, MaxUpgrades: 4, MaxUpgradesPerAddress: 4,
		UpgradeRequestTimeout: 30 * time.Second, UpgradeTimeout: 30 * time.Second})
	a := startAccepting(t, l)
	tlsCfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}
	for range 10 {
		tc := tls.Client(dialFrom(t, "", l.Addr().String(), nil), tlsCfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	eventually(t, 10*time.Second, "six evicted after their handshakes", func() bool { return l.UpgradeStats().Evicted == 6 })
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	if _, _, err := wsDial(t, l, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: &http.Client{Transport: tr}}); err != nil {
		t.Fatalf("honest client: %v", err)
	}
	a.next(t, 5*time.Second)
}
