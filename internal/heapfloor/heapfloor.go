// Package heapfloor keeps the garbage collector's heap goal at or above a
// floor: while the live heap is small, the collector waits until the
// heap has grown to the floor instead of running each time it doubles.
//
// Go's collector starts a cycle when the heap reaches (1 + GOGC/100)
// times what the last cycle left live, and at least 4 MB. A broker's live
// heap grows with its connections, so while clients connect it doubles
// again and again, and each doubling starts a cycle that marks every
// connection so far. With a floor above what those connections hold, no
// cycle runs while they connect, and the broker spends less CPU per
// connection (BENCHMARKS.md has the figures). Once the live heap is over
// half the floor, GOGC is back at its usual value and the floor changes
// nothing.
//
// The price is memory while the heap is small: up to the floor in garbage
// not yet collected, which the collector reclaims (and the scavenger
// returns to the system) when it next runs. A memory limit (GOMEMLIMIT)
// still applies: the collector runs as the heap nears it, whatever the
// floor.
//
// Floor works through runtime/debug.SetGCPercent, re-computed after each
// cycle from the live heap the cycle left (runtime/metrics). It uses the
// standard library only.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minHeap is the runtime's heap goal at GOGC=100 before a cycle has
// measured the live heap (its defaultHeapMinimum); the goal scales with
// GOGC.
const minHeap = 4 << 20

// maxPercent bounds the GOGC the floor sets, for floors of terabytes (and
// keeps the arithmetic within an int).
const maxPercent = 100_000

// Floor holds the collector's heap goal at or above Bytes. The zero value
// is not usable; use Start.
type Floor struct {
	bytes uint64
	base  int // GOGC without the floor (100 unless the environment says)

	mu      sync.Mutex
	stopped bool
	percent int // the GOGC set last
	sample  []metrics.Sample
	// Cycles counts the cycles seen (for tests).
	cycles int
}

// Start sets a floor of bytes under the heap goal and keeps it there after
// each collection, until Stop. base is the GOGC to use when the live heap
// alone gives a goal above the floor (100 is Go's default). A floor of 0
// or a negative base (collection off) starts nothing and returns nil.
func Start(bytes uint64, base int) *Floor {
	if bytes == 0 || base < 0 {
		return nil
	}
	f := &Floor{bytes: bytes, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	f.mu.Lock()
	// From the live heap a cycle before Start measured, if one ran (a
	// program that loaded a large configuration, or hashed a dummy
	// argon2id password of 64 MiB, first); else live is 0 and the
	// runtime's goal is minHeap scaled by GOGC (startPercent). Started
	// blindly at startPercent over a 64 MiB live heap, the first goal was
	// 9 x 64 MiB: an argon2id flood took petrel serve to a 660-745 MiB
	// peak before the first cycle corrected it (bench/floods.sh).
	f.set(percentFor(f.bytes, f.live(), f.base))
	f.mu.Unlock()
	f.arm()
	return f
}

// startPercent returns the GOGC giving a starting heap goal (minHeap x
// GOGC/100) of at least floor, and at least base.
func startPercent(floor uint64, base int) int {
	return max(int(min(floor*100/minHeap, maxPercent)), base)
}

// percentFor returns the GOGC giving a heap goal of at least floor over a
// live heap of live bytes, and at least base. It is never above
// startPercent: the runtime's minimum heap grows with GOGC (minHeap x
// GOGC/100), and past that GOGC the minimum alone would put the goal above
// the floor (a 1 MiB live heap asks for GOGC 3100, whose minimum heap is
// 124 MiB).
func percentFor(floor, live uint64, base int) int {
	limit := startPercent(floor, base)
	if live == 0 {
		return limit
	}
	if live >= floor {
		return base
	}
	p := min((floor-live)*100/live, maxPercent)
	return max(min(int(p), limit), base)
}

// set applies GOGC p unless it is in force already; f.mu is held.
func (f *Floor) set(p int) {
	if p == f.percent {
		return
	}
	f.percent = p
	debug.SetGCPercent(p)
}

// sentinel is an object the next collection finds unreachable: its
// cleanup runs once that cycle has ended.
type sentinel struct{ _ [16]byte } // not tiny: the tiny allocator would keep it alive with its neighbours

// arm makes a sentinel whose cleanup re-computes the floor after the next
// collection and arms again.
func (f *Floor) arm() {
	s := new(sentinel)
	runtime.AddCleanup(s, func(f *Floor) { f.afterCycle() }, f)
}

// afterCycle sets GOGC from the live heap the last cycle measured.
func (f *Floor) afterCycle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.cycles++
	f.set(percentFor(f.bytes, f.live(), f.base))
	f.arm()
}

// live returns the live heap the last cycle measured, 0 before the first;
// f.mu is held.
func (f *Floor) live() uint64 {
	metrics.Read(f.sample)
	if f.sample[0].Value.Kind() == metrics.KindUint64 {
		return f.sample[0].Value.Uint64()
	}
	return 0
}

// Percent returns the GOGC in force (as set by the floor).
func (f *Floor) Percent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.percent
}

// Stop ends the floor and restores the base GOGC.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	f.set(f.base)
}
