package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// PasswordChecks bound the password hash checks (bcrypt, argon2id) that
// clients can make the broker run: how many at once, how much CPU time
// per second, how much argon2id memory at once, how long one waits for its
// turn, and how many failures a name or an address may have per window
// before its checks are refused without hashing. Zero values take the
// defaults.
type PasswordChecks struct {
	// MaxConcurrent is the number of check slots; default half of
	// runtime.GOMAXPROCS(0) when the Checker is made, at least one, so
	// that a flood of checks leaves the other half of the CPUs to the
	// message path. A bcrypt check takes one slot, an argon2id check one
	// per lane (its p), at most all.
	MaxConcurrent int
	// CPU is the CPU time the checks may use per second of wall time, in
	// CPUs: a check starts only while the hashing budget is not spent, and
	// is charged its wall time times its lanes (at most GOMAXPROCS) when
	// it ends. Default DefaultCheckCPU of runtime.GOMAXPROCS(0) when the
	// Checker is made.
	CPU float64
	// Memory is the argon2id memory, in bytes, that checks may hold at
	// once; default DefaultCheckMemory. A hash needing more than all of it
	// runs alone.
	Memory int64
	// MaxWait is how long a check waits for a slot and memory before it is
	// refused as busy (never past the CONNECT's own deadline); default
	// DefaultCheckWait.
	MaxWait time.Duration
	// MaxWaiting bounds the checks waiting for a slot and memory at once;
	// one more is refused as busy at once. Each holds its connection (a
	// goroutine, a read buffer) while it waits, so without it a client
	// that does not wait for its answers makes the broker hold MaxWait
	// times its connection rate of them. Default DefaultMaxWaiting.
	MaxWaiting int
	// UserFailures is how many failed checks a username (or token endpoint
	// client id) may have per FailureWindow; default 5.
	UserFailures int
	// AddressFailures is how many failed checks an address (an IPv6 /64)
	// may have per FailureWindow; default 20.
	AddressFailures int
	// FailureWindow is the window of the failure limits; default 1m.
	FailureWindow time.Duration
	// MaxTracked bounds each of the maps of names, addresses and
	// (name, address) pairs the failure limits keep; default 10,000.
	MaxTracked int
	// RefusalDelay is how long the CONNACK of a CONNECT refused by the
	// failure limits of its name or address is held (broker.HeldRefusal);
	// 0: answered at once. Never for a (name, address) pair that
	// authenticated before, whose own bucket ran out.
	RefusalDelay time.Duration
}

// Defaults of PasswordChecks.
const (
	DefaultCheckMemory     = 256 << 20
	DefaultCheckWait       = 2 * time.Second
	DefaultMaxWaiting      = 64
	DefaultUserFailures    = 5
	DefaultAddressFailures = 20
	DefaultFailureWindow   = time.Minute
	DefaultMaxTracked      = 10_000
)

// DefaultCheckCPU is the hashing CPU budget of a broker with procs CPUs:
// half of them, rounded down, or a quarter of the only one. A check that
// runs holds a CPU until the scheduler preempts it (every 10 ms), so on one
// CPU the message path waits whenever a check runs: a quarter keeps that
// to a quarter of the time, leaving the median message unaffected.
func DefaultCheckCPU(procs int) float64 {
	if procs < 2 {
		return 0.25
	}
	return float64(procs / 2)
}

// withDefaults fills in the zero fields.
func (l PasswordChecks) withDefaults() PasswordChecks {
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if l.CPU <= 0 {
		l.CPU = DefaultCheckCPU(runtime.GOMAXPROCS(0))
	}
	if l.Memory <= 0 {
		l.Memory = DefaultCheckMemory
	}
	if l.MaxWait <= 0 {
		l.MaxWait = DefaultCheckWait
	}
	if l.MaxWaiting <= 0 {
		l.MaxWaiting = DefaultMaxWaiting
	}
	if l.UserFailures <= 0 {
		l.UserFailures = DefaultUserFailures
	}
	if l.AddressFailures <= 0 {
		l.AddressFailures = DefaultAddressFailures
	}
	if l.FailureWindow <= 0 {
		l.FailureWindow = DefaultFailureWindow
	}
	if l.MaxTracked <= 0 {
		l.MaxTracked = DefaultMaxTracked
	}
	return l
}

// Errors of Checker.Check besides those of VerifyPassword.
var (
	// ErrBusy: no check slot (or argon2id memory, or hashing CPU time)
	// came free within MaxWait or the caller's deadline, or MaxWaiting
	// checks were waiting already.
	ErrBusy = errors.New("auth: password checks busy")
	// ErrThrottled: the name or the address had too many failed checks
	// in the window; no hash was computed.
	ErrThrottled = errors.New("auth: too many failed password checks")
	// errThrottledKnown is ErrThrottled for a (name, address) pair that
	// authenticated before and ran out of its own failures.
	errThrottledKnown = fmt.Errorf("%w (from an address it authenticated from)", ErrThrottled)
)

// DefaultRefusalDelay is the refusal delay `petrel serve` holds the
// answers of throttled CONNECTs for, unless configured.
const DefaultRefusalDelay = time.Second

// refusal returns the error Authenticate returns for a check refused with
// err as code: code itself, or a broker.HeldRefusal for a refusal by the
// failure limits of a name or an address, when RefusalDelay is set.
func (c *Checker) refusal(code packet.ReasonCode, err error) error {
	if c.lim.RefusalDelay > 0 && code == packet.ConnectionRateExceeded &&
		errors.Is(err, ErrThrottled) && !errors.Is(err, errThrottledKnown) {
		return &broker.HeldRefusal{Code: code, Delay: c.lim.RefusalDelay, Err: err}
	}
	return code
}

// Checker runs password hash checks within PasswordChecks. It is safe for
// concurrent use; a Service and its token endpoint share one, so their
// checks share the bounds.
type Checker struct {
	lim    PasswordChecks
	now    func() time.Time
	slots  *semaphore.Weighted
	memory *semaphore.Weighted // KiB
	memKiB int64
	cpu    *cpuBudget
	procs  int // GOMAXPROCS when made
	fails  *failures

	checks, dummy, busy, throttledName, throttledAddr, cpuWaits atomic.Uint64
	running, waiting, cpuSpent                                  atomic.Int64
}

// NewChecker returns a Checker with the limits l (zero fields: defaults)
// and the clock now (nil: time.Now).
func NewChecker(l PasswordChecks, now func() time.Time) *Checker {
	l = l.withDefaults()
	if now == nil {
		now = time.Now
	}
	memKiB := max(1, l.Memory>>10)
	return &Checker{lim: l, now: now, slots: semaphore.NewWeighted(int64(l.MaxConcurrent)),
		memory: semaphore.NewWeighted(memKiB), memKiB: memKiB, cpu: newCPUBudget(l.CPU),
		procs: max(1, runtime.GOMAXPROCS(0)), fails: newFailures(l)}
}

// Limits returns the Checker's limits, defaults filled in.
func (c *Checker) Limits() PasswordChecks { return c.lim }

// CheckStats counts a Checker's work and refusals.
type CheckStats struct {
	Checks           uint64        // hashes verified, dummies included
	Dummy            uint64        // of them against the dummy hash (unknown names)
	Busy             uint64        // refused: no slot or hashing CPU within the wait (CONNACK 3 / 0x89, HTTP 503)
	ThrottledName    uint64        // refused: the name's failure limit (CONNACK 3 / 0x9F, HTTP 429)
	ThrottledAddress uint64        // refused: the address's failure limit
	CPUWaits         uint64        // checks that waited for the hashing CPU budget
	CPU              time.Duration // hashing CPU time charged to the budget
	Running          int64         // checks holding a slot now (hashing, or waiting for the CPU budget)
	Waiting          int64         // checks waiting for a slot or memory now
}

// Stats returns a snapshot of the counters.
func (c *Checker) Stats() CheckStats {
	return CheckStats{Checks: c.checks.Load(), Dummy: c.dummy.Load(), Busy: c.busy.Load(),
		ThrottledName: c.throttledName.Load(), ThrottledAddress: c.throttledAddr.Load(), CPUWaits: c.cpuWaits.Load(),
		CPU:     time.Duration(c.cpuSpent.Load()),
		Running: c.running.Load(), Waiting: c.waiting.Load()}
}

// Check verifies password against hash for a: refused with ErrThrottled
// (before any hashing) when a's name or address is over its failure
// limit, with ErrBusy when no slot comes free in time or the hashing CPU
// budget is spent until then (MaxWait and ctx's deadline bound the wait);
// otherwise VerifyPassword's answer, whose ErrMismatch counts as a failure
// for a's name and address.
func (c *Checker) Check(ctx context.Context, hash string, password []byte, a Attempt) error {
	return c.check(ctx, hash, password, a, false)
}

// checkDummy runs a check of password against dummy, a hash nobody knows
// the secret of, for a name that does not exist: the same cost, limits
// and failure accounting as a wrong password for one that does. It
// returns ErrThrottled, ErrBusy or ErrMismatch.
func (c *Checker) checkDummy(ctx context.Context, dummy string, password []byte, a Attempt) error {
	err := c.check(ctx, dummy, password, a, true)
	if err == nil {
		return ErrMismatch
	}
	return err
}

func (c *Checker) check(ctx context.Context, hash string, password []byte, a Attempt, dummy bool) error {
	k := c.fails.key(a)
	if err := c.throttle(k); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.lim.MaxWait)
	defer cancel()
	release, err := c.acquire(ctx, hash)
	if err != nil {
		c.busy.Add(1)
		return err
	}
	defer release()
	if err := c.waitCPU(ctx); err != nil {
		c.busy.Add(1)
		return err
	}
	// Failures recorded while this check waited count too, so a burst of
	// concurrent guesses is cut at the limit, not after the queue drains.
	if err := c.throttle(k); err != nil {
		return err
	}
	c.checks.Add(1)
	if dummy {
		c.dummy.Add(1)
	}
	start := c.now()
	err = VerifyPassword(hash, password)
	end := c.now()
	cost := c.cpuCost(hash, end.Sub(start))
	c.cpu.spend(end, cost)
	c.cpuSpent.Add(int64(cost))
	switch {
	case err == nil && !dummy:
		c.fails.succeeded(k)
	case err == nil, errors.Is(err, ErrMismatch):
		c.fails.failed(c.now(), k)
	}
	return err
}

// admit returns ErrThrottled, counted, when a is over a failure limit:
// for checks the caller makes itself (a SCRAM proof costs no hashing).
func (c *Checker) admit(a Attempt) error { return c.throttle(c.fails.key(a)) }

// record counts the outcome of a check the caller made itself.
func (c *Checker) record(a Attempt, ok bool) {
	if ok {
		c.fails.succeeded(c.fails.key(a))
	} else {
		c.fails.failed(c.now(), c.fails.key(a))
	}
}

// throttle returns ErrThrottled, counted, when k is over a failure limit.
func (c *Checker) throttle(k attemptKey) error {
	switch c.fails.throttled(c.now(), k) {
	case throttledKnown:
		c.throttledName.Add(1)
		return errThrottledKnown
	case throttledName:
		c.throttledName.Add(1)
		return ErrThrottled
	case throttledAddr:
		c.throttledAddr.Add(1)
		return ErrThrottled
	}
	return nil
}

// acquire waits, until ctx is done, for the slots and memory a check of
// hash needs, and returns their release.
func (c *Checker) acquire(ctx context.Context, hash string) (release func(), err error) {
	slots, memKiB := c.weights(hash)
	if c.waiting.Add(1) > int64(c.lim.MaxWaiting) {
		c.waiting.Add(-1)
		return nil, ErrBusy // no place in the queue: refused at once
	}
	defer c.waiting.Add(-1)
	// Memory first: whoever holds memory and waits for a slot waits on
	// checks that are running, never on one that waits for memory.
	if memKiB > 0 {
		if err := c.memory.Acquire(ctx, memKiB); err != nil {
			return nil, ErrBusy
		}
	}
	if err := c.slots.Acquire(ctx, slots); err != nil {
		if memKiB > 0 {
			c.memory.Release(memKiB)
		}
		return nil, ErrBusy
	}
	c.running.Add(1)
	return func() {
		c.running.Add(-1)
		c.slots.Release(slots)
		if memKiB > 0 {
			c.memory.Release(memKiB)
		}
	}, nil
}

// weights returns the slots and the KiB of memory a check of hash takes:
// one slot for bcrypt (whose 4 KiB are not counted), one per lane and the
// hash's memory for argon2id, each at most the whole.
func (c *Checker) weights(hash string) (slots, memKiB int64) {
	hc, ok := costOf(hash)
	if !ok || hc.alg != "argon2id" {
		return 1, 0
	}
	return min(max(1, int64(hc.threads)), int64(c.lim.MaxConcurrent)), min(int64(hc.memory), c.memKiB)
}
