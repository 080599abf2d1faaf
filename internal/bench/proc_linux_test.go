package bench

import (
	"os"
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

// TestSampleProcSelf measures this process across 50 ms of work on one
// thread: the CPU time is to the nanosecond where the kernel has sched
// files, and close to the work done.
func TestSampleProcSelf(t *testing.T) {
	a, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	b, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got := b.cpuSince(a)
	if got < 40*time.Millisecond || got > 2*time.Second {
		t.Errorf("%v of CPU for 50 ms of work (%d loops)", got, x)
	}
	if a.threads != nil && got%(time.Second/clockTicks) == 0 {
		t.Errorf("%v is whole clock ticks although the sched files were read", got)
	}
	t.Logf("CPU %v, per-thread figures %v", got, a.threads != nil)
}
