// Package procs fits the Go scheduler's parallelism (GOMAXPROCS) to the
// broker's load: one P while the process uses well under a core, every CPU
// as soon as it needs more.
//
// With more than one P, each goroutine woken while a P is idle makes the
// scheduler wake a second thread to look for work, which mostly finds
// none and sleeps again: at moderate message rates (a paced QoS 1 fan-in of
// 40,000 messages/s) and while clients come and go, that costs a quarter
// of the broker's CPU per message and halves nothing. One P runs the same
// load on one thread with half the context switches. A flood needs every
// core, and gets them within one sampling interval.
//
// Controller is the only code that sets GOMAXPROCS; it reads the process's
// CPU time (getrusage) every Interval. It uses the standard library only.
//
// The price: while the garbage collector runs at one P, its mark work
// shares that P with the connections, so the latency tail grows (QoS 0 at
// 50,000 messages/s: p99 up to 1.5 ms instead of 0.35 ms). petrel serve
// runs a Controller only when runtime.adaptive_procs asks for it.
package procs

import (
	"context"
	"runtime"
	"time"
)

// Defaults of Controller's thresholds.
const (
	DefaultInterval = 50 * time.Millisecond
	// DefaultHigh: at one P, a sample using more than this many cores
	// restores every P.
	DefaultHigh = 0.6
	// DefaultLow: with every P, this many samples in a row using less
	// than DefaultLow cores go down to one P.
	DefaultLow      = 0.45
	DefaultLowCount = 8
)

// Controller sets GOMAXPROCS to 1 or Max from the CPU the process used in
// each interval. The zero value is not usable; use New.
type Controller struct {
	Max      int           // the parallelism when busy (GOMAXPROCS at start)
	Interval time.Duration // sampling interval
	High     float64       // cores: above this at one P, go to Max
	Low      float64       // cores: below this LowCount samples in a row, go to 1
	LowCount int
	// OnChange, when set, is told of each change and the load that
	// caused it (cores used over the last interval).
	OnChange func(from, to int, cores float64)

	cpu  func() (time.Duration, bool) // process CPU time so far; false: unknown here
	set  func(int)                    // sets GOMAXPROCS
	cur  int
	lows int
	// Changes counts GOMAXPROCS changes (for the log and tests).
	Changes int
}

// New returns a Controller with the defaults, starting at the current
// GOMAXPROCS as Max.
func New() *Controller {
	return &Controller{
		Max: runtime.GOMAXPROCS(0), Interval: DefaultInterval,
		High: DefaultHigh, Low: DefaultLow, LowCount: DefaultLowCount,
		cpu: ProcessCPU, set: func(n int) { runtime.GOMAXPROCS(n) },
	}
}

// Step takes one sample: the process used used of CPU over elapsed. It
// returns the parallelism to run with now (and sets it when it changed).
func (c *Controller) Step(used, elapsed time.Duration) int {
	if c.cur == 0 {
		c.cur = c.Max
	}
	if elapsed <= 0 || c.Max <= 1 {
		return c.cur
	}
	cores := used.Seconds() / elapsed.Seconds()
	next := c.cur
	switch {
	case c.cur < c.Max && cores > c.High:
		next, c.lows = c.Max, 0
	case c.cur == c.Max && cores < c.Low:
		if c.lows++; c.lows >= c.LowCount {
			next, c.lows = 1, 0
		}
	default:
		c.lows = 0
	}
	if next != c.cur {
		if c.OnChange != nil {
			c.OnChange(c.cur, next, cores)
		}
		c.cur = next
		c.set(next)
		c.Changes++
	}
	return c.cur
}

// Run samples until ctx ends, then restores Max. Where the process's CPU
// time cannot be read it returns at once, leaving GOMAXPROCS alone.
func (c *Controller) Run(ctx context.Context) {
	last, ok := c.cpu()
	if c.Max <= 1 || !ok {
		return
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	defer func() {
		if c.cur != 0 && c.cur != c.Max {
			c.set(c.Max)
		}
	}()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, ok := c.cpu()
			if !ok {
				return
			}
			c.Step(used-last, now.Sub(lastAt))
			last, lastAt = used, now
		}
	}
}
