package diskstore

import (
	"bytes"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
)

// TestDiskUsageGrowsWithData checks that DiskUsage reports the bytes under
// the store's directory: after a synced write of 1 MiB of retained
// payloads it has grown by at least that much.
func TestDiskUsageGrowsWithData(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	var _ broker.DiskUser = s
	before, err := s.DiskUsage()
	if err != nil {
		t.Fatalf("DiskUsage: %v", err)
	}
	payload := bytes.Repeat([]byte{'x'}, 64<<10)
	var b broker.Batch
	for i := range 16 {
		b.Add(broker.Op{Kind: broker.OpPutRetained, Retained: &broker.StoredMessage{Topic: "t/" + string(rune('a'+i)), Payload: payload}})
	}
	if err := s.Commit(&b, true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	after, err := s.DiskUsage()
	if err != nil {
		t.Fatalf("DiskUsage: %v", err)
	}
	if after-before < 1<<20 {
		t.Fatalf("DiskUsage grew by %d bytes after 1 MiB synced; want at least 1 MiB (before %d, after %d)", after-before, before, after)
	}
}
