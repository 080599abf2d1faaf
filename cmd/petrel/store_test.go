package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestStoreInspect(t *testing.T) {
	dir := t.TempDir()
	s, err := diskstore.Open(dir, diskstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b broker.Batch
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: "sensor-1", Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: 3600}})
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: "legacy", Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	b.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: "sensor-1", Sub: &broker.StoredSubscription{Filter: "cmd/#", QoS: 1}})
	for seq := uint64(1); seq <= 3; seq++ {
		b.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: "sensor-1", Delivery: &broker.StoredDelivery{Seq: seq, QoS: 1, Msg: broker.StoredMessage{Topic: "cmd/x", QoS: 1}}})
	}
	b.Add(broker.Op{Kind: broker.OpSetInflight, ClientID: "sensor-1", Delivery: &broker.StoredDelivery{Seq: 1, PacketID: 1, State: broker.AwaitPuback}})
	b.Add(broker.Op{Kind: broker.OpPutInbound, ClientID: "legacy", PacketID: 4})
	// The same client id in tenant A is another session.
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: broker.SessionKey("A", "sensor-1"), Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
	b.Add(broker.Op{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: "status", Payload: []byte("up"), Retain: true}})
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}

	// While the store is open, inspect is refused with the holder's pid.
	var out, errb bytes.Buffer
	if code := run([]string{"store", "inspect", "--data", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "in use by another petrel") {
		t.Fatalf("inspect of an open store: exit %d, stderr %q", code, errb.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"store", "inspect", "--data", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	got := out.String()
	t.Logf("inspect:\n%s", got)
	if !strings.Contains(got, "sessions: 3, queued messages: 3, retained messages: 1") {
		t.Errorf("output lacks the totals:\n%s", got)
	}
	lines := strings.Split(got, "\n")
	// By tenant (none first), then client id.
	for i, want := range [][]string{
		{"-", `"legacy"`, "3.1.1", "never", "-", "0", "0", "0", "1"},
		{"-", `"sensor-1"`, "5.0", "1h0m0s", "-", "1", "2", "1", "0"},
		{`"A"`, `"sensor-1"`, "3.1.1", "never", "-", "0", "0", "0", "0"},
	} {
		if f := strings.Fields(lines[i+1]); strings.Join(f, " ") != strings.Join(want, " ") {
			t.Errorf("line %d: %q, want fields %q", i+1, lines[i+1], want)
		}
	}

	// A corrupt record: exit 1 naming the key.
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{Logger: quietLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("\x01Rstatus"), []byte{1, 0}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"store", "inspect", "--data", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), `key R/"status"`) {
		t.Fatalf("corrupt store: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"store", "inspect", "--data", dir, "--skip-corrupt"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "retained messages: 0") || !strings.Contains(out.String(), "corrupt records skipped: 1") {
		t.Fatalf("--skip-corrupt: exit %d, out %q", code, out.String())
	}

	if code := run([]string{"store", "inspect", "--data", t.TempDir()}, &out, &errb); code != 1 {
		t.Fatalf("empty directory: exit %d", code)
	}
	if code := run([]string{"store", "bogus"}, &out, &errb); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

// quietLogger keeps Pebble's informational messages out of the test output.
type quietLogger struct{ t *testing.T }

func (quietLogger) Infof(string, ...any)                {}
func (l quietLogger) Errorf(format string, args ...any) { l.t.Logf(format, args...) }
func (l quietLogger) Fatalf(format string, args ...any) { l.t.Fatalf(format, args...) }
