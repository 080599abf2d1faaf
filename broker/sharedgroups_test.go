package broker

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// TestShareCountersBounded: a client cycling through share group names
// leaves at most maxShareCounters round-robin counters behind, and a
// group's counter still counts its deliveries one by one.
func TestShareCountersBounded(t *testing.T) {
	g := sharedGroups{seed: maphash.MakeSeed(), next: make(map[uint64]uint64)}
	for i := range 3 * maxShareCounters {
		g.pick(fmt.Sprintf("A\x00g%d\x00common/feed", i))
	}
	if n := len(g.next); n > maxShareCounters {
		t.Fatalf("%d counters kept after %d groups, want at most %d", n, 3*maxShareCounters, maxShareCounters)
	}
	for want := uint64(0); want < 3; want++ {
		if got := g.pick("B\x00g\x00feed"); got != want {
			t.Fatalf("pick %d of one group returned %d", want, got)
		}
	}
}
