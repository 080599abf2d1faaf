package broker

import (
	"fmt"
	"sync"
	"time"
)

// errStore marks a failed store write.
var errStore = fmt.Errorf("broker: store write failed")

// commit writes batch to the store, if there is one, after the lazy
// operations waiting (they were made before batch, so they go first).
func (b *Broker) commit(batch *Batch, durable bool) error {
	return b.commitAs(batch, durable, false)
}

// commitRiding is commit(batch, true) through the store's CommitRiding,
// when it has one (RidingStore).
func (b *Broker) commitRiding(batch *Batch) error {
	return b.commitAs(batch, true, true)
}

func (b *Broker) commitAs(batch *Batch, durable, ride bool) error {
	if b.store == nil {
		return nil
	}
	if lazy := b.takeLazy(); lazy != nil {
		lazy.Ops = append(lazy.Ops, batch.Ops...)
		batch = lazy
	}
	if batch.Len() == 0 {
		return nil
	}
	defer b.observeCommit(time.Now(), batch.Len())
	var err error
	if ride && b.riding != nil {
		err = b.riding.CommitRiding(batch)
	} else {
		err = b.store.Commit(batch, durable)
	}
	if err != nil {
		b.stats.storeErrors.Add(1)
		if log, since := b.storeLog.allow(time.Now()); log {
			b.log.Error("store write failed", "err", err, "ops", batch.Len(), "durable", durable, "failed_since_last_line", since)
		}
		return fmt.Errorf("%w: %w", errStore, err)
	}
	return nil
}

// storeErrLogEvery is how often a failing store is logged: an unavailable
// store (a full disk) fails every write until it recovers, and each
// refused publish must not write a line. Stats.StoreErrors counts them
// all.
const storeErrLogEvery = 10 * time.Second

// storeErrLog limits the log lines of failed store writes to one per
// storeErrLogEvery. Its mutex is a leaf.
type storeErrLog struct {
	mu struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
}

// allow reports whether a failed write at now is logged, and how many
// failed since the last line.
func (l *storeErrLog) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.last.IsZero() && now.Sub(l.mu.last) < storeErrLogEvery {
		l.mu.suppressed++
		return false, 0
	}
	n := l.mu.suppressed
	l.mu.last, l.mu.suppressed = now, 0
	return true, n
}

// lazyFlushAt is how many lazy operations make the next one flush them.
const lazyFlushAt = 1024

// lazyOps holds store operations whose loss in a crash costs only a
// resend: removals of acknowledged deliveries, released inbound QoS 2 ids,
// packet ids of sent QoS 1 deliveries. They ride along with the next
// commit, or are flushed lazyInterval after the first of them came (a
// timer armed only while some wait: an idle broker has no periodic
// wake-up), at Shutdown, or when lazyFlushAt of them wait. Guarded by its
// own mutex, a leaf.
type lazyOps struct {
	mu     sync.Mutex
	batch  *Batch
	timer  *time.Timer    // flushes; armed when batch goes from nil to non-nil
	closed bool           // Shutdown flushed for the last time: no timer is armed again
	fired  sync.WaitGroup // timer flushes under way (stopLazy waits for them)
}

// lazyInterval bounds how long lazy store operations wait for a commit.
const lazyInterval = 100 * time.Millisecond

// lazy queues op for a later commit (see lazyOps).
func (b *Broker) lazy(op Op) {
	if b.store == nil {
		return
	}
	b.lazyOps.mu.Lock()
	if b.lazyOps.batch == nil {
		b.lazyOps.batch = new(Batch)
		switch {
		case b.lazyOps.closed: // the final flush comes from Shutdown
		case b.lazyOps.timer == nil:
			b.lazyOps.timer = time.AfterFunc(lazyInterval, b.lazyTimerFired)
		default:
			// Stopped or fired (a commit may have taken the batch before it
			// fired: it then finds nothing, or a newer batch, which is at
			// worst flushed early).
			b.lazyOps.timer.Reset(lazyInterval)
		}
	}
	b.lazyOps.batch.Add(op)
	full := b.lazyOps.batch.Len() >= lazyFlushAt
	b.lazyOps.mu.Unlock()
	if full {
		b.flushLazy()
	}
}

// takeLazy returns the waiting lazy operations, or nil.
func (b *Broker) takeLazy() *Batch {
	b.lazyOps.mu.Lock()
	defer b.lazyOps.mu.Unlock()
	l := b.lazyOps.batch
	b.lazyOps.batch = nil
	return l
}

// lazyTimerFired flushes, unless Shutdown has flushed for the last time.
func (b *Broker) lazyTimerFired() {
	b.lazyOps.mu.Lock()
	if b.lazyOps.closed {
		b.lazyOps.mu.Unlock()
		return
	}
	b.lazyOps.fired.Add(1)
	b.lazyOps.mu.Unlock()
	defer b.lazyOps.fired.Done()
	b.flushLazy()
}

// stopLazy disarms the flush timer for good and waits for a flush it
// started (Shutdown, before its final flushLazy: the store may be closed
// once Shutdown returns).
func (b *Broker) stopLazy() {
	b.lazyOps.mu.Lock()
	b.lazyOps.closed = true
	if b.lazyOps.timer != nil {
		b.lazyOps.timer.Stop()
	}
	b.lazyOps.mu.Unlock()
	b.lazyOps.fired.Wait()
}

// flushLazy writes the waiting lazy operations, not synced.
func (b *Broker) flushLazy() {
	var empty Batch
	// A failed write is logged and counted by commit; the operations only
	// spare resends after a restart.
	_ = b.commit(&empty, false)
}

// commitOne writes a single operation.
func (b *Broker) commitOne(op Op, durable bool) error {
	if b.store == nil {
		return nil
	}
	var batch Batch
	batch.Add(op)
	return b.commit(&batch, durable)
}
