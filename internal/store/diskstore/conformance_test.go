package diskstore

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	for _, mode := range []string{SyncAlways, SyncInterval, SyncNone} {
		t.Run(mode, func(t *testing.T) {
			storetest.Run(t, storetest.Factory{
				Persistent: true,
				Open: func(t *testing.T, dir string) broker.Store {
					return openT(t, dir, Options{Sync: mode})
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
