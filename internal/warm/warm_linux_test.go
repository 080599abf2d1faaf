//go:build linux && (amd64 || arm64)

package warm

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// TestWarmsWhileTouched: a Warmer is dormant (no pinned thread) until
// Touch; then a thread pinned to each CPU runs, with GOMAXPROCS as it was
// (the threads are not Go threads and hold no P); IdleAfter after the
// last Touch it is dormant again and the threads are gone.
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
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("warming: GOMAXPROCS %d, want %d as before", got, base)
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
	eventually(t, "the pinned threads gone", func() bool { return pinnedThreads(t) == pinnedBefore })

	w.Touch() // traffic again
	eventually(t, "warming again", func() bool { return w.State() == Warming })
	if w.Starts() != 2 {
		t.Errorf("%d starts, want 2", w.Starts())
	}
}

// taskStatus reads a field of /proc/self/task/TID/status ("" if the
// thread is gone).
func taskStatus(tid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// wakeups reads the times the thread has been scheduled to run
// (/proc/self/task/TID/schedstat's third field).
func wakeups(t *testing.T, tid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		t.Fatalf("schedstat %q", b)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRawThread: a raw thread is a thread of this process, pinned to its
// CPU, every signal blocked (SIGKILL and SIGSTOP cannot be), waking about
// every interval; the thread that started it has its signal mask back;
// stop ends it and clears its id.
func TestRawThread(t *testing.T) {
	m, ok := allowedMask()
	if !ok {
		t.Fatal("sched_getaffinity failed")
	}
	cpu := m.cpus()[len(m.cpus())-1]
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := syscall.Gettid()
	maskBefore := taskStatus(self, "SigBlk")
	th := startRaw(cpu, time.Millisecond)
	if th == nil {
		t.Fatal("startRaw refused")
	}
	tid := th.id()
	if tid <= 0 || tid == self {
		t.Fatalf("thread id %d (this thread %d)", tid, self)
	}
	if got := taskStatus(self, "SigBlk"); got != maskBefore {
		t.Errorf("the starting thread's blocked signals %s, were %s", got, maskBefore)
	}
	// Every signal but SIGKILL (9) and SIGSTOP (19): bits 8 and 18 clear.
	if got := taskStatus(tid, "SigBlk"); got != "fffffffffffbfeff" {
		t.Errorf("the raw thread's blocked signals %q, want fffffffffffbfeff", got)
	}
	if got := taskStatus(tid, "Cpus_allowed_list"); got != strconv.Itoa(cpu) {
		t.Errorf("the raw thread may run on %q, want CPU %d alone", got, cpu)
	}
	if got := taskStatus(tid, "Tgid"); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("the raw thread's process %q, want %d", got, os.Getpid())
	}
	before := wakeups(t, tid)
	time.Sleep(100 * time.Millisecond)
	if n := wakeups(t, tid) - before; n < 20 {
		t.Errorf("%d wake-ups in 100 ms sleeping 1 ms at a time, want about 100", n)
	}
	threads{th}.stop()
	if th.id() != 0 {
		t.Errorf("after stop: id %d, want 0", th.id())
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); err == nil {
		t.Errorf("after stop: thread %d still listed", tid)
	}
}

// TestRawThreadHoldsSignals: a signal sent to a raw thread itself stays
// pending there, and one sent to the process reaches Go's handler. Go's
// handler cannot run on a thread the runtime does not know: a raw thread
// that took a signal would crash the process.
func TestRawThreadHoldsSignals(t *testing.T) {
	m, _ := allowedMask()
	th := startRaw(m.cpus()[0], time.Millisecond)
	if th == nil {
		t.Fatal("startRaw refused")
	}
	defer threads{th}.stop()
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	defer signal.Stop(c)
	if err := syscall.Tgkill(os.Getpid(), th.id(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the thread has woken a few times since
	// SIGUSR1 (10) is bit 9 of the thread's own pending set.
	if got := taskStatus(th.id(), "ShdPnd"); got == "" {
		t.Fatal("no status for the raw thread")
	}
	pnd, err := strconv.ParseUint(taskStatus(th.id(), "SigPnd"), 16, 64)
	if err != nil || pnd&(1<<9) == 0 {
		t.Errorf("SIGUSR1 not pending on the raw thread: SigPnd %q", taskStatus(th.id(), "SigPnd"))
	}
	select {
	case <-c:
		t.Error("a signal sent to the raw thread reached Go's handler")
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c:
	case <-time.After(2 * time.Second):
		t.Fatal("a signal sent to the process not delivered")
	}
}

// TestBusyStopsWarming: while the process uses more CPU than BusyCores
// the Warmer runs no thread (a busy CPU does not sleep), and warms again
// once the load has been under the mark for a while.
func TestBusyStopsWarming(t *testing.T) {
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
	if p := pinnedThreads(t); p != 0 {
		t.Errorf("busy: %d pinned threads, want none", p)
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
