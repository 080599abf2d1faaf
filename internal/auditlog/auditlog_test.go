package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// readJSONLines decodes every line of the file at path, failing the test
// on a line that is not one JSON object.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestAuditLinesAreJSONAndOnlyAuditEvents: marked lines go to the file as
// one JSON object each, at INFO even when the main log is at WARN; other
// lines do not; the main log is unchanged.
func TestAuditLinesAreJSONAndOnlyAuditEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(`{"msg":"kept from before"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var main bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&main, &slog.HandlerOptions{Level: slog.LevelWarn}), a))
	log.Info("client connected", ratelog.AuditKey, "connect", "tenant", "A", "client", "m1")
	log.Info("store opened", "data_dir", "/x") // not an audit event
	log.Warn("subscription refused", ratelog.AuditKey, "subscribe.refused", "filter", "B/#")
	log.With(ratelog.AuditKey, "reload").Info("configuration reloaded")
	log.Debug("debug", ratelog.AuditKey, "connect") // below INFO: never audited
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readJSONLines(t, path)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want the one from before and 3 audit events: %v", len(lines), lines)
	}
	if lines[0]["msg"] != "kept from before" {
		t.Fatal("the file was truncated, not appended to")
	}
	if lines[1]["audit"] != "connect" || lines[1]["tenant"] != "A" || lines[1]["level"] != "INFO" || lines[1]["time"] == nil {
		t.Fatalf("line %v", lines[1])
	}
	if lines[2]["filter"] != "B/#" || lines[3]["msg"] != "configuration reloaded" {
		t.Fatalf("lines %v", lines[2:])
	}
	if strings.Contains(main.String(), "client connected") || !strings.Contains(main.String(), "subscription refused") {
		t.Fatalf("main log at WARN got %q", main.String())
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
}

// TestReopenFollowsRotation: after the file is moved away (logrotate),
// Reopen writes to a new file at the path.
func TestReopenFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(Handler(slog.DiscardHandler, a))
	log.Info("one", ratelog.AuditKey, "connect")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info("two", ratelog.AuditKey, "connect") // still into the moved file
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("three", ratelog.AuditKey, "connect")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := readJSONLines(t, path+".1"), readJSONLines(t, path)
	if len(old) != 2 || len(cur) != 1 || cur[0]["msg"] != "three" {
		t.Fatalf("rotated file %v, new file %v", old, cur)
	}
}

// TestWriteRateBounded: past the burst, lines are dropped and counted in
// one report line.
func TestWriteRateBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a.limit = rate.NewLimiter(rate.Limit(0.001), 5)
	log := slog.New(Handler(slog.DiscardHandler, a))
	for range 50 {
		log.Info("client connected", ratelog.AuditKey, "connect")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readJSONLines(t, path)
	if len(lines) != 6 || lines[5]["msg"] != DroppedMsg || lines[5]["count"] != float64(45) {
		t.Fatalf("%d lines, last %v; want 5 and a report of 45 dropped", len(lines), lines[len(lines)-1])
	}
}
