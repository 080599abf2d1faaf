package diskstore

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{SyncAlways, Options{Sync: SyncAlways}},
		{SyncInterval, Options{Sync: SyncInterval}},
		{SyncNone, Options{Sync: SyncNone}},
		// A Restorer's error still stops Load when corrupt records are skipped.
		{"skip-corrupt", Options{SkipCorrupt: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, storetest.Factory{
				Persistent: true,
				Open: func(t *testing.T, dir string) broker.Store {
					return openT(t, dir, tc.opts)
				},
			})
		})
	}
}

// openT opens a store in dir with a test logger, failing t on error.
func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}
