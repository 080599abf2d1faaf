//go:build linux

package warm

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pinnedThreads counts this process's threads bound to a single CPU.
func pinnedThreads(t *testing.T) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				v = strings.TrimSpace(v)
				if !strings.ContainsAny(v, ",-") {
					n++
				}
			}
		}
	}
	return n
}

// eventually polls cond for up to 3 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within 3 s: %s", what)
}

// lightTraffic touches w every millisecond until the function it returns
// is called (which returns once the touching stopped).
func lightTraffic(w *Warmer) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Millisecond):
				w.Touch()
			}
		}
	}()
	return func() { close(quit); <-done }
}

func start(t *testing.T, o Options) *Warmer {
	t.Helper()
	w := Start(o, nil)
	if m, _ := allowedMask(); len(m.cpus()) < 2 {
		if w != nil {
			t.Fatal("Start on one CPU returned a Warmer")
		}
		t.Log("one CPU: Start returns nil, as it should; nothing more to check here")
		return nil
	}
	if w == nil {
		t.Fatal("Start returned nil on a machine with several CPUs")
	}
	t.Cleanup(w.Stop)
	return w
}

// TestWarmsWhileTouched: a Warmer is dormant (no pinned thread, GOMAXPROCS
// as it was) until Touch; then a thread pinned to each CPU runs and
// GOMAXPROCS has a P more for each; IdleAfter after the last Touch it is
// dormant again, with GOMAXPROCS back.
func TestWarmsWhileTouched(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	pinnedBefore := pinnedThreads(t)
	// IdleAfter well above the touches' spacing, even on a loaded machine.
	w := start(t, Options{IdleAfter: 200 * time.Millisecond, Sample: 5 * time.Millisecond, BusyCores: 64})
	if w == nil {
		return
	}
	n := len(w.CPUs())
	time.Sleep(20 * time.Millisecond)
	if s := w.State(); s != Dormant {
		t.Fatalf("before any Touch: %v", s)
	}
	if p := pinnedThreads(t); p != pinnedBefore {
		t.Fatalf("before any Touch: %d pinned threads, %d before Start", p, pinnedBefore)
	}
	stopTouching := lightTraffic(w)
	eventually(t, "warming after Touch", func() bool { return w.State() == Warming })
	eventually(t, "a pinned thread per CPU", func() bool { return pinnedThreads(t) == pinnedBefore+n })
	if got := runtime.GOMAXPROCS(0); got != base+n {
		t.Errorf("warming: GOMAXPROCS %d, want %d (%d + a P per warm thread)", got, base+n, base)
	}
	time.Sleep(300 * time.Millisecond) // more than IdleAfter, touched all along
	if s := w.State(); s != Warming {
		t.Errorf("touched every millisecond: %v", s)
	}
	if w.Starts() != 1 {
		t.Errorf("%d starts under steady traffic, want 1", w.Starts())
	}
	stopTouching()
	eventually(t, "dormant after IdleAfter without Touch", func() bool { return w.State() == Dormant })
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("dormant: GOMAXPROCS %d, want %d", got, base)
	}
	eventually(t, "the pinned threads gone", func() bool { return pinnedThreads(t) == pinnedBefore })

	w.Touch() // traffic again
	eventually(t, "warming again", func() bool { return w.State() == Warming })
	if w.Starts() != 2 {
		t.Errorf("%d starts, want 2", w.Starts())
	}
}

// TestBusyStopsWarming: while the process uses more CPU than BusyCores
// the Warmer runs no thread (a busy CPU does not sleep), and warms again
// once the load has been under the mark for a while.
func TestBusyStopsWarming(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	var states []State
	var mu sync.Mutex
	w := Start(Options{IdleAfter: time.Second, Sample: 10 * time.Millisecond, BusyCores: 0.3}, func(s State) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	})
	if m, _ := allowedMask(); len(m.cpus()) < 2 {
		if w != nil {
			t.Fatal("Start on one CPU returned a Warmer")
		}
		return
	}
	t.Cleanup(w.Stop)
	var burn atomic.Bool
	burn.Store(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a load of one core, touching as it goes
		defer wg.Done()
		for i := 0; burn.Load(); i++ {
			if i%1000 == 0 {
				w.Touch()
			}
		}
	}()
	eventually(t, "busy", func() bool { return w.State() == Busy })
	time.Sleep(30 * time.Millisecond)
	if s := w.State(); s != Busy {
		t.Errorf("still burning: %v", s)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("busy: GOMAXPROCS %d, want %d", got, base)
	}
	burn.Store(false)
	wg.Wait()
	defer lightTraffic(w)()
	eventually(t, "warming once the load is light", func() bool { return w.State() == Warming })
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 3 || states[len(states)-1] != Warming {
		t.Errorf("states %v: want warming, busy, ..., warming", states)
	}
}

// TestTouchRace: Touch from many goroutines while the Warmer comes and
// goes (run with -race); it never stays dormant while touched.
func TestTouchRace(t *testing.T) {
	w := start(t, Options{IdleAfter: 5 * time.Millisecond, Sample: time.Millisecond, BusyCores: 64})
	if w == nil {
		return
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				w.Touch()
				if i%100 == 0 {
					time.Sleep(7 * time.Millisecond) // long enough to go dormant
				}
			}
		}()
	}
	wg.Wait()
	w.Touch()
	eventually(t, "warming after the last Touch", func() bool { return w.State() == Warming })
}

func TestNilWarmer(t *testing.T) {
	var w *Warmer
	w.Touch()
	w.Stop()
	if w.State() != Dormant || w.Starts() != 0 || w.CPUs() != nil {
		t.Error("a nil Warmer is not dormant and empty")
	}
}
