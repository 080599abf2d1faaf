package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestPercentFor: the GOGC for a floor over a live heap.
func TestPercentFor(t *testing.T) {
	for _, tc := range []struct {
		floor, live uint64
		base, want  int
	}{
		{32 << 20, 4 << 20, 100, 700},    // goal 4 MiB x 8 = 32 MiB
		{32 << 20, 1 << 20, 100, 800},    // 3100 would put the runtime's minimum heap at 124 MiB
		{32 << 20, 16 << 20, 100, 100},   // the base already reaches the floor
		{32 << 20, 64 << 20, 100, 100},   // live over the floor
		{32 << 20, 12 << 20, 300, 300},   // a larger base wins
		{32 << 20, 10, 100, 800},         // bounded by the minimum heap
		{32 << 20, 0, 100, 800},          // nothing live measured
		{32 << 20, 20 << 20, 100, 100},   // (32-20)/20 = 60% < base
		{100 << 20, 10 << 20, 50, 900},   // goal 100 MiB
		{1 << 20, 1 << 20, 100, 100},     // live at the floor
		{64 << 20, 63 << 20, 0, 1},       // base 0: the floor still holds
		{64 << 20, 64<<20 - 1, 0, 0},     // rounding down below 1%
		{48 << 20, 16 << 20, 100, 200},   // goal 48 MiB
		{1 << 40, 1 << 20, 100, 100_000}, // a terabyte floor over 1 MiB is bounded
	} {
		if got := percentFor(tc.floor, tc.live, tc.base); got != tc.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", tc.floor, tc.live, tc.base, got, tc.want)
		}
	}
}

// TestStartPercent: the GOGC that puts the runtime's starting goal (4 MiB
// at GOGC 100) at the floor.
func TestStartPercent(t *testing.T) {
	for _, tc := range []struct {
		floor      uint64
		base, want int
	}{
		{32 << 20, 100, 800},
		{64 << 20, 100, 1600},
		{2 << 20, 100, 100}, // under the runtime's own minimum
		{32 << 20, 1000, 1000},
		{1 << 40, 100, maxPercent},
	} {
		if got := startPercent(tc.floor, tc.base); got != tc.want {
			t.Errorf("startPercent(%d, %d) = %d, want %d", tc.floor, tc.base, got, tc.want)
		}
	}
}

// garbage allocates n bytes in 1 KiB objects that die at once.
func garbage(n int) {
	var keep []byte
	for i := 0; i < n>>10; i++ {
		keep = make([]byte, 1<<10)
		keep[0] = byte(i)
	}
	runtime.KeepAlive(keep)
}

// TestFloorDefersCollection: with a 64 MiB floor, 24 MiB of garbage on a
// small live heap runs no collection; without one it runs several (the
// runtime's goal starts at 4 MiB). After a collection the floor is set
// again from the live heap, and Stop restores the base GOGC.
func TestFloorDefersCollection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	var ms runtime.MemStats
	cycles := func() uint32 { runtime.ReadMemStats(&ms); return ms.NumGC }

	before := cycles()
	garbage(24 << 20)
	if n := cycles() - before; n < 2 {
		t.Fatalf("without a floor, 24 MiB of garbage ran %d collections, want several", n)
	}

	runtime.GC()
	f := Start(64<<20, 100)
	if p := f.Percent(); p != 1600 { // the starting goal, 4 MiB at GOGC 100, x 16
		t.Errorf("starting GOGC %d, want 1600", p)
	}
	before = cycles()
	garbage(24 << 20)
	if n := cycles() - before; n != 0 {
		t.Errorf("with a 64 MiB floor, 24 MiB of garbage ran %d collections, want 0", n)
	}

	// A collection re-arms the floor from the live heap it measured.
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		seen := f.cycles
		f.mu.Unlock()
		if seen > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the floor saw no collection within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	if p := f.Percent(); p <= 100 {
		t.Errorf("GOGC %d after a collection on a small live heap, want above 100", p)
	}
	// The goal is the floor, not more: the runtime's minimum heap grows
	// with GOGC, and a small live heap must not set it past the floor.
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g < 60<<20 || g > 72<<20 {
		t.Errorf("heap goal %d MiB after a collection with a 64 MiB floor, want about 64", g>>20)
	}
	before = cycles()
	garbage(24 << 20)
	if n := cycles() - before; n != 0 {
		t.Errorf("after a collection, 24 MiB of garbage ran %d collections, want 0", n)
	}

	f.Stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC %d after Stop, want the base 100", p)
	}
}

// TestStartAfterALargeLiveHeap: started after a collection measured a
// live heap above the floor (petrel serve hashes a 64 MiB argon2id dummy
// password before it starts the floor), the floor sets the base GOGC, not
// the starting one: at GOGC 800 over 64 MiB live, the first goal would be
// about 640 MiB.
func TestStartAfterALargeLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	live := make([]byte, 64<<20)
	live[0] = 1
	runtime.GC()
	f := Start(32<<20, 100)
	defer f.Stop()
	if p := f.Percent(); p != 100 {
		t.Errorf("GOGC %d when started over a 64 MiB live heap with a 32 MiB floor, want the base 100", p)
	}
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g > 160<<20 {
		t.Errorf("heap goal %d MiB over a 64 MiB live heap, want about 128", g>>20)
	}
	runtime.KeepAlive(live)
}

// TestStartOff: a zero floor or collection turned off starts nothing.
func TestStartOff(t *testing.T) {
	if f := Start(0, 100); f != nil {
		t.Error("a zero floor started")
	}
	if f := Start(32<<20, -1); f != nil {
		t.Error("a floor started with collection off")
	}
}
