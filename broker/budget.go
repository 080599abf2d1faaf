package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/memsize"
	"github.com/petrel-mqtt/petrel/internal/session"
)

// DefaultQueueBytes is Options.QueueBytes's default: 50,000 messages (the
// default QueueMessages) of 1.3 KiB. A subscriber that stops reading can
// make the broker hold no more for it.
const DefaultQueueBytes = 64 << 20

// memoryBudgetShare is the part of the memory the process may use that
// the default MemoryBudget gives to queues, in-flight windows and write
// buffers: with the garbage collector's default GOGC=100 the heap may
// grow to twice what is live, so they take up to half of it, and the
// other half is left to the retained messages, the sessions, the
// connections and the store's cache.
const memoryBudgetShare = 4

// defaultMemoryBudget is a quarter of the memory the process may use (its
// cgroup's limit, else the machine's); 0 (no bound) when neither is known.
func defaultMemoryBudget() int64 {
	n, _ := memsize.Limit()
	return int64(n / memoryBudgetShare)
}

// budgetLogEvery is the least time between two log lines about messages
// dropped by a full memory budget; the drops in between are added up.
const budgetLogEvery = 10 * time.Second

// budgetLog adds up the messages a full memory budget dropped and logs
// them at most once per budgetLogEvery, from a timer armed by the first
// drop not yet logged: a flood of drops costs an atomic add each, and no
// goroutine waits while nothing is dropped.
type budgetLog struct {
	pending atomic.Uint64 // drops not yet logged
	armed   atomic.Bool   // a timer is set to log them
	mu      struct {
		sync.Mutex
		timer   *time.Timer
		last    time.Time // when the last line was written
		stopped bool      // Shutdown: no more timers
	}
}

// budgetDropped notes n messages dropped because the memory budget was
// full; a WARN line says so, within budgetLogEvery.
func (b *Broker) budgetDropped(n int) {
	l := &b.budgetLog
	l.pending.Add(uint64(n))
	if l.armed.Load() || !l.armed.CompareAndSwap(false, true) {
		return
	}
	b.armBudgetLog()
}

// armBudgetLog sets the timer that logs the pending drops: at once when
// the last line is older than budgetLogEvery, otherwise when it will be.
func (b *Broker) armBudgetLog() {
	l := &b.budgetLog
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.stopped {
		return
	}
	wait := max(budgetLogEvery-time.Since(l.mu.last), 0)
	l.mu.timer = time.AfterFunc(wait, b.logBudgetDrops)
}

// logBudgetDrops writes the line for the drops added up so far.
func (b *Broker) logBudgetDrops() {
	l := &b.budgetLog
	l.mu.Lock()
	l.mu.last = time.Now()
	l.mu.Unlock()
	if n := l.pending.Swap(0); n > 0 {
		b.log.Warn("memory budget reached: new messages dropped", "dropped", n, "dropped_total", b.budget.Dropped(),
			"held_bytes", b.budget.Held(), "budget_bytes", b.budget.Max(), "policy", b.opts().QueuePolicy)
	}
	l.armed.Store(false)
	// A drop after the Swap that found the timer still armed: arm again.
	if l.pending.Load() > 0 && l.armed.CompareAndSwap(false, true) {
		b.armBudgetLog()
	}
}

// stopBudgetLog stops the timer at Shutdown.
func (b *Broker) stopBudgetLog() {
	l := &b.budgetLog
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.stopped = true
	if l.mu.timer != nil {
		l.mu.timer.Stop()
	}
}

// newBudget makes the broker's memory budget from the options.
func newBudget(o *Options) *session.Budget { return session.NewBudget(max(o.MemoryBudget, 0)) }
