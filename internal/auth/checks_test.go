package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: testNow} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func bcryptHash(t testing.TB, pw string, cost int) string {
	t.Helper()
	h, err := HashBcrypt([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestCheckerFailureLimits checks the failure limits: a name and an
// address are refused without hashing once their failures reach the
// limit, each refill one failure per window/limit, and a (name, address)
// pair that authenticated keeps its own limit, so guesses from elsewhere
// do not lock it out.
func TestCheckerFailureLimits(t *testing.T) {
	clk := newClock()
	c := NewChecker(PasswordChecks{UserFailures: 3, AddressFailures: 5, FailureWindow: 30 * time.Second}, clk.now)
	hash := bcryptHash(t, "right", 4)
	ctx := context.Background()
	a1 := netip.MustParseAddr("192.0.2.1")
	a2 := netip.MustParseAddr("192.0.2.2")
	check := func(name string, addr netip.Addr, pw string) error {
		t.Helper()
		return c.Check(ctx, hash, []byte(pw), Attempt{Name: name, Addr: addr})
	}

	// gw authenticates from a1: that pair is known from now on.
	if err := check("gw", a1, "right"); err != nil {
		t.Fatal(err)
	}
	// Three wrong guesses for gw from a2, then gw is refused from a2
	// without a hash, even with the right password.
	for i := range 3 {
		if err := check("gw", a2, "guess"); !errors.Is(err, ErrMismatch) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	before := c.Stats()
	if err := check("gw", a2, "right"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("fourth try for a throttled name: %v, want ErrThrottled", err)
	}
	st := c.Stats()
	if st.Checks != before.Checks || st.ThrottledName != before.ThrottledName+1 {
		t.Fatalf("a throttled check hashed or was not counted: %+v -> %+v", before, st)
	}
	// From a1, where gw authenticated, gw still gets in.
	if err := check("gw", a1, "right"); err != nil {
		t.Fatalf("known pair locked out by guesses from elsewhere: %v", err)
	}
	// One failure is forgiven per window/limit (10s).
	clk.advance(10 * time.Second)
	if err := check("gw", a2, "right"); err != nil {
		t.Fatalf("after the refill: %v", err)
	}

	// Address limit: a2 sprays five other names, then any name from a2
	// is refused; from a1 the same new name is fine.
	clk.advance(time.Minute)
	for i := range 5 {
		if err := check(fmt.Sprintf("n%d", i), a2, "guess"); !errors.Is(err, ErrMismatch) {
			t.Fatalf("spray %d: %v", i, err)
		}
	}
	before = c.Stats()
	if err := check("fresh", a2, "right"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("sixth name from one address: %v, want ErrThrottled", err)
	}
	if st := c.Stats(); st.ThrottledAddress != before.ThrottledAddress+1 {
		t.Fatalf("address refusal not counted: %+v", st)
	}
	if err := check("fresh", a1, "right"); err != nil {
		t.Fatalf("another address: %v", err)
	}

	// A known pair has a limit of its own: guessing gw's password from
	// a1 is throttled too.
	for range 3 {
		_ = check("gw", a1, "guess") // ErrMismatch
	}
	if err := check("gw", a1, "right"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("guessing from a known address: %v, want ErrThrottled", err)
	}
}

// TestCheckerTrackingIsBounded sprays more names, addresses and
// successful pairs than MaxTracked: the maps stay at the bound.
func TestCheckerTrackingIsBounded(t *testing.T) {
	f := newFailures(PasswordChecks{MaxTracked: 16}.withDefaults())
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		f.failed(testNow, f.key(Attempt{Name: fmt.Sprint("user-", i), Addr: a}))
		f.succeeded(f.key(Attempt{Name: fmt.Sprint("ok-", i), Addr: a}))
	}
	if f.names.Len() != 16 || f.addrs.Len() != 16 || f.known.Len() != 16 {
		t.Fatalf("tracking not at its bound of 16: names %d, addresses %d, pairs %d", f.names.Len(), f.addrs.Len(), f.known.Len())
	}
}

// TestAddrKeyIPv6Prefix: every address of an IPv6 /64 shares one key;
// IPv4 and IPv4-mapped addresses share theirs.
func TestAddrKeyIPv6Prefix(t *testing.T) {
	tests := []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
	}
	for _, tt := range tests {
		if addrKey(netip.MustParseAddr(tt.a)) != addrKey(netip.MustParseAddr(tt.b)) {
			t.Errorf("%s and %s have different keys", tt.a, tt.b)
		}
	}
	if addrKey(netip.MustParseAddr("2001:db8:1:2::1")) == addrKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("two /64 networks share a key")
	}
}

// TestCheckerSlotsAndMemory: past the slots, or past the argon2id memory
// budget, a check waits at most MaxWait and is refused with ErrBusy,
// counted; a check that needs no memory is not held up by the memory
// budget; an argon2id check takes one slot per lane.
func TestCheckerSlotsAndMemory(t *testing.T) {
	argon := hashArgon2id([]byte("right"), argonParams{salt: make([]byte, 16), time: 1, memory: 8 << 10, threads: 2}, 32)
	bc := bcryptHash(t, "right", 4)
	c := NewChecker(PasswordChecks{MaxConcurrent: 3, Memory: 8 << 20, MaxWait: 50 * time.Millisecond}, nil)
	if s, m := c.weights(argon); s != 2 || m != 8<<10 {
		t.Fatalf("argon2id p=2 m=8MiB takes %d slots and %d KiB, want 2 and 8192", s, m)
	}
	if s, m := c.weights(bc); s != 1 || m != 0 {
		t.Fatalf("bcrypt takes %d slots and %d KiB, want 1 and 0", s, m)
	}
	ctx := context.Background()
	a := Attempt{Name: "u"}

	// The memory budget is taken: argon2id waits and is refused, bcrypt runs.
	if err := c.memory.Acquire(ctx, c.memKiB); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, argon, []byte("right"), a); !errors.Is(err, ErrBusy) {
		t.Fatalf("argon2id over the memory budget: %v, want ErrBusy", err)
	}
	if err := c.Check(ctx, bc, []byte("right"), a); err != nil {
		t.Fatalf("bcrypt held up by the memory budget: %v", err)
	}
	c.memory.Release(c.memKiB)

	// Two of three slots taken: argon2id (two lanes) is refused, bcrypt runs.
	if err := c.slots.Acquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, argon, []byte("right"), a); !errors.Is(err, ErrBusy) {
		t.Fatalf("argon2id without two free slots: %v, want ErrBusy", err)
	}
	if err := c.Check(ctx, bc, []byte("right"), a); err != nil {
		t.Fatalf("bcrypt with one free slot: %v", err)
	}
	// All slots taken: refused within MaxWait, or sooner at ctx's deadline.
	if err := c.slots.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := c.Check(short, bc, []byte("right"), a); !errors.Is(err, ErrBusy) {
		t.Fatalf("no free slot: %v, want ErrBusy", err)
	}
	c.slots.Release(3)
	if st := c.Stats(); st.Busy != 3 || st.Checks != 2 || st.Running != 0 || st.Waiting != 0 {
		t.Fatalf("stats %+v, want 3 busy, 2 checks, none running or waiting", st)
	}
	if err := c.Check(ctx, argon, []byte("right"), a); err != nil {
		t.Fatalf("argon2id with everything free: %v", err)
	}
}

// TestDummyHashCost: the dummy costs what most configured hashes cost,
// bcrypt at petrel passwd's default cost when there are none.
func TestDummyHashCost(t *testing.T) {
	b6, b8 := bcryptHash(t, "a", 6), bcryptHash(t, "b", 8)
	argon := hashArgon2id([]byte("c"), argonParams{salt: make([]byte, 12), time: 1, memory: 1 << 10, threads: 1}, 24)
	tests := []struct {
		name   string
		hashes []string
		want   hashCost
	}{
		{"none", nil, hashCost{alg: "bcrypt", bcryptCost: DefaultBcryptCost}},
		{"bcrypt", []string{b8}, hashCost{alg: "bcrypt", bcryptCost: 8}},
		{"most common", []string{b6, b8, b8}, hashCost{alg: "bcrypt", bcryptCost: 8}},
		{"argon2id", []string{argon, argon, b6}, hashCost{alg: "argon2id", time: 1, memory: 1 << 10, threads: 1, saltLen: 12, keyLen: 24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dummyCost(tt.hashes); got != tt.want {
				t.Fatalf("dummy cost %+v, want %+v", got, tt.want)
			}
			if tt.hashes == nil {
				return // a cost-12 bcrypt is slow under -race; dummyHash is the same code
			}
			d, err := dummyHash(tt.hashes)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := costOf(d); !ok || got != tt.want {
				t.Fatalf("dummy hash costs %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestCheckerWaitersBounded: at most MaxWaiting checks wait for a slot;
// one more is refused with ErrBusy at once, without waiting its MaxWait,
// so a flood of CONNECTs that do not wait for their answers cannot make
// the broker hold a connection per attempt for MaxWait. The waiters run
// once the slot is free.
func TestCheckerWaitersBounded(t *testing.T) {
	const waiters = 3
	bc := bcryptHash(t, "right", 4)
	c := NewChecker(PasswordChecks{MaxConcurrent: 1, MaxWaiting: waiters, MaxWait: time.Hour}, nil)
	ctx := context.Background()
	if err := c.slots.Acquire(ctx, 1); err != nil { // the only slot: every check waits
		t.Fatal(err)
	}
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() { errs <- c.Check(ctx, bc, []byte("right"), Attempt{Name: fmt.Sprint("u", i)}) }()
	}
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return c.Stats().Waiting == waiters }, "the waiters queued")
	// The queue is full: refused now, while the slot is still taken (a
	// MaxWait of an hour would otherwise hold it).
	if err := c.Check(ctx, bc, []byte("right"), Attempt{Name: "late"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("check over MaxWaiting: %v, want ErrBusy", err)
	}
	if st := c.Stats(); st.Busy != 1 || st.Waiting != waiters {
		t.Fatalf("stats %+v, want 1 busy and %d waiting", st, waiters)
	}
	c.slots.Release(1)
	for range waiters {
		if err := <-errs; err != nil {
			t.Fatalf("a waiter: %v", err)
		}
	}
}
