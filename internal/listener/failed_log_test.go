package listener

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// TestTLSHandshakeFailureLoggedRateLimited: plain MQTT sent to a TLS port
// fails the handshake; the first failure from an address is an INFO line
// with its address and error, the next ones within the interval are
// counted in one report (at Close here), not a line each.
func TestTLSHandshakeFailureLoggedRateLimited(t *testing.T) {
	ca := newTestCA(t, "ca")
	rec := &recordHandler{}
	c := Config{Type: TypeTLS, Address: "127.0.0.1:0", HandshakeTimeout: time.Minute, HelloTimeout: time.Minute}
	c.CertFile, c.KeyFile = ca.serverFiles(t, t.TempDir(), "server")
	l, err := Listen(context.Background(), c, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() }) // a second Close returns the first's result
	mqttConnect := []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	const n = 10
	var conns = make([]bool, 0, n)
	for range n {
		nc := dialFrom(t, "127.0.0.3", l.Addr().String(), mqttConnect)
		conns = append(conns, closedByPeer(t, 5*time.Second, nc)[0])
	}
	for i, closed := range conns {
		if !closed {
			t.Fatalf("connection %d with plain MQTT was not closed", i)
		}
	}
	failed := func() []slog.Record { return rec.withMessage("TLS handshake failed") }
	eventually(t, 5*time.Second, "a failure line", func() bool { return len(failed()) == 1 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := failed()
	if len(lines) != 1 || lines[0].Level != slog.LevelInfo {
		t.Fatalf("%d failure lines for %d failed handshakes from one address, want 1 at INFO", len(lines), n)
	}
	attrs := recordAttrs(lines[0])
	if !strings.HasPrefix(attrs["remote"], "127.0.0.3:") || attrs["err"] == "" || attrs[ratelog.AuditKey] != "tls.failure" {
		t.Fatalf("line %v: want the remote address, the error and the audit event", attrs)
	}
	rep := rec.withMessage(ratelog.SuppressedMsg)
	if len(rep) != 1 || recordAttrs(rep[0])["count"] != "9" {
		t.Fatalf("reports %v, want one counting 9", rep)
	}
}

func (h *recordHandler) withMessage(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

func recordAttrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}
