package bench

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSumExecRuntime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"head (1, #threads: 1)\n---\nse.exec_start      :  5781569.251369\nse.sum_exec_runtime      :    12.450960\nse.nr_migrations : 0\n", 12*time.Millisecond + 450960, true},
		{"se.sum_exec_runtime : 7\n", 7 * time.Millisecond, true},
		{"se.sum_exec_runtime : 0.5\n", 500 * time.Microsecond, true},
		{"se.sum_exec_runtime : 1.1234567\n", time.Millisecond + 123456, true},
		{"se.vruntime : 3.0\n", 0, false},
		{"se.sum_exec_runtime : x.1\n", 0, false},
		{"se.sum_exec_runtime 3.1\n", 0, false},
	} {
		got, ok := sumExecRuntime([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCPUSince(t *testing.T) {
	ms := time.Millisecond
	before := procSample{cpu: 100 * ms, threads: map[int]time.Duration{1: 60 * ms, 2: 40 * ms}}
	// Thread 3 started after before; the ticks moved by 20 ms.
	after := procSample{cpu: 120 * ms, threads: map[int]time.Duration{1: 71 * ms, 2: 44 * ms, 3: 2 * ms}}
	if got := after.cpuSince(before); got != 17*ms {
		t.Errorf("precise: %v, want 17ms", got)
	}
	// Thread 2 ended with 30 ms the samples do not see: the ticks win.
	ended := procSample{cpu: 150 * ms, threads: map[int]time.Duration{1: 71 * ms}}
	if got := ended.cpuSince(before); got != 50*ms {
		t.Errorf("ended thread: %v, want the ticks' 50ms", got)
	}
	// No per-thread figures: ticks.
	if got := (procSample{cpu: 130 * ms}).cpuSince(before); got != 30*ms {
		t.Errorf("no threads: %v, want 30ms", got)
	}
}

// TestSampleProcSelf measures this process across 30 ms of CPU (by
// getrusage, which the kernel also derives from the threads' runtimes):
// sampleProc's figure agrees with it, and is to the nanosecond where the
// kernel has sched files, not whole clock ticks.
func TestSampleProcSelf(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	a, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusage()
	x := 0
	for end := time.Now().Add(2 * time.Second); rusage()-r0 < 30*time.Millisecond && time.Now().Before(end); {
		x++
	}
	r1 := rusage()
	b, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got, want := b.cpuSince(a), r1-r0
	// The samples bracket the getrusage readings: got is at least their
	// difference, less the tick rounding when only ticks are read.
	low, high := want-time.Second/clockTicks, want+50*time.Millisecond
	if a.threads != nil {
		low = want - time.Millisecond
	}
	if got < low || got > high {
		t.Errorf("sampleProc: %v of CPU where getrusage says %v (%d loops)", got, want, x)
	}
	if _, err := os.Stat("/proc/self/task"); err == nil && a.threads == nil {
		if _, err := os.Stat("/proc/self/sched"); err == nil {
			t.Errorf("the kernel has sched files, but sampleProc read none")
		}
	}
	if a.threads != nil && got%(time.Second/clockTicks) == 0 {
		t.Errorf("%v is whole clock ticks although the sched files were read", got)
	}
	t.Logf("CPU %v, getrusage %v, per-thread figures %v", got, want, a.threads != nil)
}
