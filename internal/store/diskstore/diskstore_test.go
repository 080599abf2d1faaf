package diskstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // never returns: the parent kills it
	}
	if os.Getenv(parkChildEnv) != "" {
		parkChild() // never returns
	}
	goleak.VerifyTestMain(m)
}

// fill commits a session "c" with three queued messages, a subscription,
// an inbound id and two retained messages, and closes the store.
func fill(t *testing.T, dir string) {
	t.Helper()
	s := openT(t, dir, Options{})
	var b broker.Batch
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: "c", Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: 60}})
	b.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: "c", Sub: &broker.StoredSubscription{Filter: "t/#", QoS: 1}})
	b.Add(broker.Op{Kind: broker.OpPutInbound, ClientID: "c", PacketID: 7})
	for seq := uint64(1); seq <= 3; seq++ {
		b.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: "c", Delivery: &broker.StoredDelivery{
			Seq: seq, QoS: 1, Msg: broker.StoredMessage{Topic: fmt.Sprintf("t/%d", seq), Payload: []byte("payload"), QoS: 1},
		}})
	}
	for _, topic := range []string{"r/1", "r/2"} {
		b.Add(broker.Op{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: topic, Payload: []byte("x"), Retain: true}})
	}
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// rewrite changes the value of key with Pebble directly (the store is closed).
func rewrite(t *testing.T, dir string, key []byte, change func(old []byte) []byte) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{Logger: pebbleLogger{s: &Store{log: testLogger(t)}, ep: newEpoch(nil, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatalf("get %s: %v", formatKey(key), err)
	}
	nv := change(append([]byte(nil), v...))
	_ = closer.Close() // releases the value
	if err := db.Set(key, nv, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptRecords(t *testing.T) {
	q2 := queueKey(nil, 1, 2)
	cases := []struct {
		name    string
		key     []byte
		change  func([]byte) []byte
		wantErr error
		wantKey string
	}{
		{"garbage", q2, func([]byte) []byte { return []byte{formatV1, 0xff, 0xff, 0xff} }, ErrCorrupt, "Q/cid=1/seq=2"},
		{"truncated", q2, func(v []byte) []byte { return v[:len(v)-3] }, ErrTruncated, "Q/cid=1/seq=2"},
		{"truncated header", q2, func(v []byte) []byte { return v[:3] }, ErrTruncated, "Q/cid=1/seq=2"},
		{"empty", q2, func([]byte) []byte { return nil }, ErrTruncated, "Q/cid=1/seq=2"},
		{"unknown format", q2, func(v []byte) []byte { v[0] = 9; return v }, ErrUnknownFormat, "Q/cid=1/seq=2"},
		{"trailing bytes", q2, func(v []byte) []byte { return append(v, 0) }, ErrCorrupt, "Q/cid=1/seq=2"},
		{"retained", retainedKey(nil, "r/2"), func(v []byte) []byte { return v[:len(v)-1] }, ErrTruncated, `R/"r/2"`},
		{"subscription", subKey(nil, 1, "t/#"), func(v []byte) []byte { v[1] = 3; return v }, ErrCorrupt, `U/cid=1/"t/#"`},
		{"inbound", inKey(nil, 1, 7), func(v []byte) []byte { return append(v, 1) }, ErrCorrupt, "I/cid=1/in/pid=7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir)
			rewrite(t, dir, tc.key, tc.change)

			s := openT(t, dir, Options{})
			_, err := broker.LoadAll(context.Background(), s)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("Load: %v; want %v naming %s", err, tc.wantErr, tc.wantKey)
			}
			closeT(t, s)

			s = openT(t, dir, Options{SkipCorrupt: true})
			defer closeT(t, s)
			st, err := broker.LoadAll(context.Background(), s)
			if err != nil {
				t.Fatalf("Load with SkipCorrupt: %v", err)
			}
			if s.Corrupt() != 1 {
				t.Fatalf("Corrupt() = %d, want 1", s.Corrupt())
			}
			c := st.Sessions[0]
			if n := len(c.Queue) + len(c.Subscriptions) + len(c.InboundQoS2) + len(st.Retained); n != 6 {
				t.Fatalf("loaded %d records, want the 6 sound ones: %+v %+v", n, c, st.Retained)
			}
		})
	}
}

func TestCorruptSession(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir)
	rewrite(t, dir, sessionKey(nil, "c"), func(v []byte) []byte { return v[:2] })
	if _, err := Open(dir, Options{Logger: testLogger(t)}); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), `S/"c"`) {
		t.Fatalf("Open: %v; want truncated naming S/\"c\"", err)
	}
	s := openT(t, dir, Options{SkipCorrupt: true})
	st, err := broker.LoadAll(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 0 || len(st.Retained) != 2 || s.Corrupt() != 1 {
		t.Fatalf("loaded %d sessions, %d retained, %d corrupt; want 0, 2, 1", len(st.Sessions), len(st.Retained), s.Corrupt())
	}
	// The client can start over: a new session gets a new cid, without
	// the old records.
	var b broker.Batch
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: "c", Session: &broker.StoredSession{Version: packet.V311}})
	if err := s.Commit(&b, true); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = openT(t, dir, Options{})
	defer closeT(t, s)
	st, err = broker.LoadAll(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Sessions[0]; len(st.Sessions) != 1 || len(c.Queue)+len(c.Subscriptions)+len(c.InboundQoS2) != 0 {
		t.Fatalf("new session: %+v", st.Sessions)
	}
}

func TestSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir)
	rewrite(t, dir, metaKey(metaVersion), func([]byte) []byte { return encodeMeta(schemaVersion + 1) })
	_, err := Open(dir, Options{Logger: testLogger(t)})
	if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("Open: %v; want unknown schema version", err)
	}
	// The lock was released on the failed Open.
	rewrite(t, dir, metaKey(metaVersion), func([]byte) []byte { return encodeMeta(schemaVersion) })
	closeT(t, openT(t, dir, Options{}))
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	_, err := Open(dir, Options{Logger: testLogger(t)})
	want := fmt.Sprintf("data directory %s is in use by another petrel (pid %d)", dir, os.Getpid())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open: %v; want %q", err, want)
	}
	if _, err := Open(dir, Options{ReadOnly: true, Logger: testLogger(t)}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only Open while held: %v", err)
	}
	closeT(t, s)
	closeT(t, openT(t, dir, Options{}))
}

func TestSyncOptions(t *testing.T) {
	for _, o := range []Options{{}, {Sync: "always"}, {Sync: "interval"}, {Sync: "interval", SyncInterval: time.Millisecond}, {Sync: "none"}} {
		s := openT(t, t.TempDir(), o)
		if err := s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: "a"}}), true); err != nil {
			t.Fatalf("%+v: Commit: %v", o, err)
		}
		time.Sleep(5 * time.Millisecond) // let an interval sync run
		syncs := s.Stats().Syncs
		switch o.Sync {
		case "", SyncAlways:
			if syncs != 1 {
				t.Errorf("%+v: %d syncs for one durable commit, want 1", o, syncs)
			}
		case SyncInterval:
			if o.SyncInterval == time.Millisecond && syncs == 0 {
				t.Errorf("%+v: no interval sync", o)
			}
		case SyncNone:
			if syncs != 0 {
				t.Errorf("%+v: %d syncs, want none", o, syncs)
			}
		}
		closeT(t, s)
	}
	for _, o := range []Options{{Sync: "fsync"}, {Sync: "Always"}, {Sync: "interval", SyncInterval: -time.Second}} {
		if s, err := Open(t.TempDir(), o); err == nil {
			closeT(t, s)
			t.Fatalf("%+v: Open succeeded", o)
		}
	}
}

func TestReadOnly(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{ReadOnly: true}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("read-only Open of an empty directory: %v", err)
	}
	dir := t.TempDir()
	fill(t, dir)
	s := openT(t, dir, Options{ReadOnly: true})
	defer closeT(t, s)
	st, err := broker.LoadAll(context.Background(), s)
	if err != nil || len(st.Sessions) != 1 || len(st.Sessions[0].Queue) != 3 {
		t.Fatalf("Load: %v %+v", err, st)
	}
	if err := s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpDeleteRetained, Topic: "r/1"}), true); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Commit: %v; want ErrReadOnly", err)
	}
}

// TestCidCounter checks that a cid is never reused, even when the batches
// allocating them commit out of order and the store restarts.
func TestCidCounter(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	put := func(id string) {
		t.Helper()
		if err := s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5}}), true); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	put("b")
	if err := s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpDeleteSession, ClientID: "b"}), true); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = openT(t, dir, Options{})
	defer closeT(t, s)
	put("c")
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.mu.cids; len(got) != 2 || got["a"] != 1 || got["c"] != 3 {
		t.Fatalf("cids %v, want a:1 c:3", got)
	}
}

func closeT(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
