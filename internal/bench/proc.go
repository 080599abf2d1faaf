package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is a broker process's CPU time and resident memory.
type procSample struct {
	cpu time.Duration // utime + stime, in whole clock ticks
	rss int64         // bytes
	// threads is each live thread's CPU time to the nanosecond
	// (se.sum_exec_runtime in /proc/PID/task/TID/sched); nil where the
	// kernel does not offer it.
	threads map[int]time.Duration
}

// cpuSince is the CPU time the process used since before. A clock tick
// (10 ms) is a large share of what a broker spends on a short run at a
// light rate, so the per-thread nanosecond figures are used when both
// samples have them and they account for the ticks: a thread that ended
// between the samples takes its time with it, and then the ticks are the
// better figure.
func (s procSample) cpuSince(before procSample) time.Duration {
	ticks := s.cpu - before.cpu
	if s.threads == nil || before.threads == nil {
		return ticks
	}
	var precise time.Duration
	for tid, t := range s.threads {
		precise += t - before.threads[tid] // a new thread's is all since before
	}
	if precise < ticks-2*time.Second/clockTicks {
		return ticks // time went with an ended thread
	}
	return precise
}

// sampleProc reads /proc/PID/stat (utime + stime) and /proc/PID/status
// (VmRSS).
func sampleProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start with field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("bench: /proc/%d/stat: bad utime/stime", pid)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	s.threads = threadCPU(pid)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return s, fmt.Errorf("bench: /proc/%d/status: VmRSS %q", pid, v)
			}
			s.rss = kb << 10
		}
	}
	return s, nil
}

// procMeter measures a broker process across a run; with pid 0 it does
// nothing.
type procMeter struct {
	pid    int
	before procSample
	self   time.Duration
	err    error
}

func startMeter(pid int) *procMeter {
	m := &procMeter{pid: pid, self: selfCPU()}
	if pid > 0 {
		m.before, m.err = sampleProc(pid)
	}
	return m
}

// finish fills the report's broker and client CPU and memory figures;
// deliveries is the number the CPU time is divided by.
func (m *procMeter) finish(r *Report, deliveries int64) {
	r.ClientCPU = (selfCPU() - m.self).Seconds()
	if m.pid == 0 {
		return
	}
	after, err := sampleProc(m.pid)
	if m.err == nil {
		m.err = err
	}
	if m.err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("broker pid %d: %v", m.pid, m.err))
		return
	}
	r.BrokerCPU = after.cpuSince(m.before).Seconds()
	if deliveries > 0 {
		r.CPUPerMillion = r.BrokerCPU / (float64(deliveries) / 1e6)
	}
	r.RSSBefore, r.RSSAfter = m.before.rss, after.rss
}

// threadCPU reads each thread's se.sum_exec_runtime (milliseconds, to six
// decimals) from /proc/PID/task/TID/sched, which kernels built with
// CONFIG_SCHED_DEBUG offer; nil when any cannot be read.
func threadCPU(pid int) map[int]time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	m := make(map[int]time.Duration, len(tasks))
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name() + "/sched")
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread ended after ReadDir
			}
			return nil
		}
		t, ok := sumExecRuntime(b)
		if !ok {
			return nil
		}
		m[tid] = t
	}
	return m
}

// sumExecRuntime finds "se.sum_exec_runtime : MS.NNNNNN" in a sched file.
func sumExecRuntime(b []byte) (time.Duration, bool) {
	const key = "se.sum_exec_runtime"
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	line := b[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(line)), ":")
	if !ok {
		return 0, false
	}
	ms, frac, _ := strings.Cut(strings.TrimSpace(v), ".")
	whole, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || whole < 0 {
		return 0, false
	}
	d := time.Duration(whole) * time.Millisecond
	if frac != "" {
		if len(frac) > 6 {
			frac = frac[:6]
		}
		n, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		for k := len(frac); k < 6; k++ {
			n *= 10
		}
		d += time.Duration(n) // six decimals of a millisecond are nanoseconds
	}
	return d, true
}
