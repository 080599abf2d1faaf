package broker

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// loadedStore is a Store whose Load returns a fixed state.
type loadedStore struct{ st *StoredState }

func (s *loadedStore) Load(context.Context) (*StoredState, error) { return s.st, nil }
func (s *loadedStore) Commit(*Batch, bool) error                  { return nil }
func (s *loadedStore) Close() error                               { return nil }

// TestRestoreReleasesLoadedState: a restore of releaseAfterRestore
// messages or more has the runtime collect what Load returned and give
// its pages back (off the start-up path); a smaller one does not.
func TestRestoreReleasesLoadedState(t *testing.T) {
	for _, n := range []int{releaseAfterRestore - 1, releaseAfterRestore} {
		called := make(chan struct{}, 1)
		st := &StoredState{Retained: make([]*StoredMessage, n)}
		for i := range st.Retained {
			st.Retained[i] = &StoredMessage{Topic: fmt.Sprintf("r/%d", i), Payload: []byte("x"), Retain: true}
		}
		b, err := newBroker(Options{Store: &loadedStore{st}}, func() { called <- struct{}{} })
		if err != nil {
			t.Fatal(err)
		}
		want := n >= releaseAfterRestore
		select {
		case <-called:
			if !want {
				t.Errorf("%d restored messages: memory released, want it left to the collector", n)
			}
		case <-time.After(time.Second):
			if want {
				t.Errorf("%d restored messages: memory not released", n)
			}
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
