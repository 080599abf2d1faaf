package diskstore

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestWriteError checks that a failed WAL write (here ENOSPC on every
// write and sync of a .log file) makes the durable Commit fail, and every
// later one, instead of acknowledging.
func TestWriteError(t *testing.T) {
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !full.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return syscall.ENOSPC
		}
		return nil
	}))
	s := openT(t, t.TempDir(), Options{fs: fs})
	put := func(id string) error {
		return s.Commit(new(broker.Batch).Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5}}), true)
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	err := put("during")
	if err == nil {
		t.Fatal("durable Commit on a full disk succeeded")
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
	full.Store(false)
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v; want ErrFailed", err)
	}
}
