package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCPUBudgetBoundsHashingTime: checks that start whenever the budget
// lets them, each charged its cost when it ends, use at most rate*T +
// burst + one check's cost of CPU time over any run of T, whatever the
// cost of a check; a check may start only while the bucket is not in
// debt.
func TestCPUBudgetBoundsHashingTime(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cpus       float64
		wall, cost time.Duration // of one check
	}{
		{"quarter of a CPU, bcrypt-like checks", 0.25, 60 * time.Millisecond, 60 * time.Millisecond},
		{"quarter of a CPU, a check longer than the burst", 0.25, 700 * time.Millisecond, 700 * time.Millisecond},
		{"one CPU", 1, 60 * time.Millisecond, 60 * time.Millisecond},
		{"two CPUs, argon2id p=2", 2, 150 * time.Millisecond, 2 * 150 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newCPUBudget(tc.cpus)
			t0 := time.Unix(1_000_000, 0)
			now, spent, checks := t0, time.Duration(0), 0
			const T = 60 * time.Second
			for now.Sub(t0) < T {
				if d := b.delay(now); d > 0 {
					now = now.Add(d) // a flood waits exactly as long as it must
					continue
				}
				now = now.Add(tc.wall)
				b.spend(now, tc.cost)
				spent += tc.cost
				checks++
			}
			elapsed := now.Sub(t0)
			bound := time.Duration(tc.cpus*float64(elapsed)) + b.burst + tc.cost
			if spent > bound {
				t.Fatalf("%d checks spent %v of CPU in %v, more than rate*T + burst + one check = %v", checks, spent, elapsed, bound)
			}
			// And the budget is used: a flood is not held far below it.
			if low := time.Duration(tc.cpus*float64(elapsed)) - tc.cost; spent < low {
				t.Fatalf("%d checks spent %v of CPU in %v, less than rate*T - one check = %v", checks, spent, elapsed, low)
			}
		})
	}
}

// TestCheckerCPUBudget: a check finds the hashing CPU budget in debt and
// would wait past its max_wait: it is refused with ErrBusy without
// waiting, no hash computed, and counted; with a debt it can wait out, it
// waits until the debt is paid and runs. An argon2id check is charged its wall time per lane, at most
// GOMAXPROCS lanes.
func TestCheckerCPUBudget(t *testing.T) {
	clk := newClock()
	c := NewChecker(PasswordChecks{CPU: 0.5, MaxWait: 5 * time.Second}, clk.now)
	if got := c.Limits().CPU; got != 0.5 {
		t.Fatalf("CPU limit %v, want 0.5", got)
	}
	hash := bcryptHash(t, "right", 4)
	ctx := context.Background()
	a := Attempt{Name: "u"}

	// Ten seconds of hashing in debt: twenty seconds to pay at half a CPU.
	c.cpu.spend(clk.now(), 10*time.Second+c.cpu.burst)
	if err := c.Check(ctx, hash, []byte("right"), a); !errors.Is(err, ErrBusy) {
		t.Fatalf("check with the budget in debt: %v, want ErrBusy", err)
	}
	if st := c.Stats(); st.Checks != 0 || st.Busy != 1 || st.CPUWaits != 0 {
		t.Fatalf("stats %+v, want no hash computed, 1 busy refusal and no wait (the budget cannot admit it within max_wait)", st)
	}

	// Paid but for 25 ms of CPU (50 ms of wall time at half a CPU): the
	// check waits for the budget and runs within its max_wait.
	clk.advance(20*time.Second - 50*time.Millisecond) // refills 10 s - 25 ms
	go func() {
		// Once the check waits for the budget, the clock pays its debt.
		for end := time.Now().Add(10 * time.Second); c.Stats().CPUWaits == 0 && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		clk.advance(time.Second)
	}()
	if err := c.Check(ctx, hash, []byte("right"), a); err != nil {
		t.Fatalf("check once the debt is paid: %v", err)
	}
	if st := c.Stats(); st.Checks != 1 || st.CPUWaits != 1 {
		t.Fatalf("stats %+v, want 1 hash computed after 1 wait for the budget", st)
	}

	argon := hashArgon2id([]byte("right"), argonParams{salt: make([]byte, 16), time: 1, memory: 64, threads: 4}, 32)
	for _, tc := range []struct {
		procs int
		want  time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {8, 4 * time.Second}} {
		c.procs = tc.procs
		if got := c.cpuCost(argon, time.Second); got != tc.want {
			t.Errorf("argon2id p=4, 1 s, GOMAXPROCS %d: charged %v, want %v", tc.procs, got, tc.want)
		}
		if got := c.cpuCost(hash, time.Second); got != time.Second {
			t.Errorf("bcrypt, 1 s, GOMAXPROCS %d: charged %v, want 1s", tc.procs, got)
		}
	}
}

// TestDefaultCheckCPU: half the CPUs, rounded down, or a quarter of the
// only one.
func TestDefaultCheckCPU(t *testing.T) {
	for procs, want := range map[int]float64{1: 0.25, 2: 1, 3: 1, 4: 2, 16: 8} {
		if got := DefaultCheckCPU(procs); got != want {
			t.Errorf("DefaultCheckCPU(%d) = %v, want %v", procs, got, want)
		}
	}
}
