package diskstore

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestWriteError checks that a failed WAL write that is not a full disk
// (here EIO on every write and sync of a .log file) makes the durable
// Commit fail with ErrFailed, and every later one, instead of
// acknowledging; that the failed commit's new session leaves no cid
// behind; and that the store reopens its engine by itself once writes
// work again.
func TestWriteError(t *testing.T) {
	var broken atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !broken.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return syscall.EIO
		}
		return nil
	}))
	s := openT(t, t.TempDir(), Options{fs: fs})
	defer closeT(t, s)
	put := func(id string) error {
		return s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5}}), true)
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	broken.Store(true)
	err := put("during")
	if err == nil {
		t.Fatal("durable Commit with a failing WAL succeeded")
	}
	t.Logf("Commit: %v", err)
	s.mu.Lock()
	_, kept := s.mu.cids["during"]
	s.mu.Unlock()
	if kept {
		t.Error("the failed commit's new session stayed in the cid map")
	}
	if err := put("after"); !errors.Is(err, ErrFailed) {
		t.Fatalf("Commit after a failed write: %v; want ErrFailed", err)
	}
	broken.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	for put("recovered") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 15 s after writes worked again: %v", s.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
