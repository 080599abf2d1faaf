package memstore_test

import (
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	// A restart hands the closed store's content to a new one (Reopen).
	var mu sync.Mutex
	last := make(map[string]*memstore.Store)
	storetest.Run(t, storetest.Factory{
		Persistent: true,
		Open: func(t *testing.T, dir string) broker.Store {
			mu.Lock()
			defer mu.Unlock()
			s := memstore.New()
			if prev := last[dir]; prev != nil {
				s = prev.Reopen()
			}
			last[dir] = s
			return s
		},
	})
}

func TestConformanceSameInstance(t *testing.T) {
	storetest.Run(t, storetest.Factory{
		Open: func(t *testing.T, dir string) broker.Store { return memstore.New() },
	})
}
