package procs

import (
	"context"
	"sync"
	"testing"
	"time"
)

func newTest(max int) (*Controller, *[]int) {
	var set []int
	c := New()
	c.Max = max
	c.set = func(n int) { set = append(set, n) }
	return c, &set
}

// TestStep: one P after LowCount light samples in a row, every P again at
// the first heavy sample at one P; loads in between change nothing.
func TestStep(t *testing.T) {
	c, set := newTest(2)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	light, heavy, middle := ms(10), ms(40), ms(25) // cores over 50 ms: 0.2, 0.8, 0.5
	for i := range c.LowCount - 1 {
		if got := c.Step(light, ms(50)); got != 2 {
			t.Fatalf("light sample %d: %d procs, want 2", i+1, got)
		}
	}
	// A sample in between breaks the run of light ones.
	if got := c.Step(middle, ms(50)); got != 2 {
		t.Fatalf("middle sample: %d procs, want 2", got)
	}
	for range c.LowCount - 1 {
		c.Step(light, ms(50))
	}
	if got := c.Step(light, ms(50)); got != 1 {
		t.Fatalf("after %d light samples: %d procs, want 1", c.LowCount, got)
	}
	// At one P, a load in between stays; a heavy one goes back at once.
	if got := c.Step(middle, ms(50)); got != 1 {
		t.Fatalf("middle sample at one P: %d procs, want 1", got)
	}
	if got := c.Step(heavy, ms(50)); got != 2 {
		t.Fatalf("heavy sample at one P: %d procs, want 2", got)
	}
	if want := []int{1, 2}; len(*set) != 2 || (*set)[0] != want[0] || (*set)[1] != want[1] {
		t.Fatalf("GOMAXPROCS set to %v, want %v", *set, want)
	}
	if c.Changes != 2 {
		t.Fatalf("Changes = %d, want 2", c.Changes)
	}
}

// TestStepOneCPU: with one CPU there is nothing to adapt.
func TestStepOneCPU(t *testing.T) {
	c, set := newTest(1)
	for range 20 {
		c.Step(0, 50*time.Millisecond)
	}
	if len(*set) != 0 {
		t.Fatalf("GOMAXPROCS set to %v on one CPU", *set)
	}
}

// TestRun: Run samples the process CPU every interval, goes to one P while
// idle, and restores Max when its context ends; it leaves GOMAXPROCS alone
// where the CPU time cannot be read.
func TestRun(t *testing.T) {
	var mu sync.Mutex
	var set []int
	c := New()
	c.Max, c.Interval, c.LowCount = 4, time.Millisecond, 3
	c.cpu = func() (time.Duration, bool) { return 0, true } // idle
	c.set = func(n int) { mu.Lock(); set = append(set, n); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(set)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle process never went to one P")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if set[0] != 1 || set[len(set)-1] != 4 {
		t.Fatalf("GOMAXPROCS set to %v: want 1 first and 4 (Max) after Run", set)
	}

	unknown := New()
	unknown.Max = 4
	unknown.cpu = func() (time.Duration, bool) { return 0, false }
	unknown.set = func(n int) { t.Errorf("GOMAXPROCS set to %d without a CPU reading", n) }
	unknown.Run(context.Background()) // returns at once
}
