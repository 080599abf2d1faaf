package auth

import (
	"context"
	"sync"
	"time"
)

// cpuBudget is a token bucket of hashing CPU time. It fills at rate CPU
// seconds per second of wall time, up to burst. A check may start only
// while the bucket is not in debt, and pays what it cost when it ends
// (its wall time times the CPUs it could use), which may put the bucket in
// debt: the cost of a hash is known only once it is computed, and a check
// cannot be cut short. Over any interval T the checks that started use at
// most rate*T + burst + the cost of the checks running at its end, so a
// flood of checks, whatever it sends, leaves the rest of the CPU time to
// the message path, also on a broker with one CPU, where a check running
// holds the only one until the scheduler preempts it.
type cpuBudget struct {
	rate  float64       // CPU seconds per second
	burst time.Duration // CPU time the bucket holds at most
	mu    struct {
		sync.Mutex
		tokens time.Duration // negative: debt
		at     time.Time     // when tokens was last brought up to date
	}
}

func newCPUBudget(cpus float64) *cpuBudget {
	b := &cpuBudget{rate: cpus, burst: time.Duration(cpus * float64(time.Second))}
	b.mu.tokens = b.burst
	return b
}

// refillLocked brings the tokens up to date at now.
func (b *cpuBudget) refillLocked(now time.Time) {
	if b.mu.at.IsZero() {
		b.mu.at = now
		return
	}
	if d := now.Sub(b.mu.at); d > 0 {
		b.mu.tokens = min(b.burst, b.mu.tokens+time.Duration(float64(d)*b.rate))
		b.mu.at = now
	}
}

// delay returns how long after now the bucket is out of debt: 0 when a
// check may start now.
func (b *cpuBudget) delay(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	if b.mu.tokens >= 0 {
		return 0
	}
	return time.Duration(float64(-b.mu.tokens)/b.rate) + 1
}

// spend charges cpu, the CPU time a check took, at now.
func (b *cpuBudget) spend(now time.Time, cpu time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	b.mu.tokens -= cpu
}

// waitCPU waits until the hashing CPU budget lets a check start, at most
// until ctx is done; it returns ErrBusy at once when the budget would not
// let it start before ctx's deadline. The checks waiting here hold their
// slots, so they start in the order they got them.
func (c *Checker) waitCPU(ctx context.Context) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for waited := false; ; waited = true {
		d := c.cpu.delay(c.now())
		if d == 0 {
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return ErrBusy
		}
		if !waited {
			c.cpuWaits.Add(1)
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return ErrBusy
		case <-timer.C:
		}
	}
}

// cpuCost is what a check of hash that took wall time costs in CPU time:
// wall times the CPUs it could use, its lanes (one for bcrypt, p for
// argon2id) but at most GOMAXPROCS.
func (c *Checker) cpuCost(hash string, wall time.Duration) time.Duration {
	lanes := 1
	if hc, ok := costOf(hash); ok && hc.alg == "argon2id" {
		lanes = max(1, int(hc.threads))
	}
	return wall * time.Duration(min(lanes, c.procs))
}
