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
	cpu time.Duration
	rss int64 // bytes
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
	r.BrokerCPU = (after.cpu - m.before.cpu).Seconds()
	if deliveries > 0 {
		r.CPUPerMillion = r.BrokerCPU / (float64(deliveries) / 1e6)
	}
	r.RSSBefore, r.RSSAfter = m.before.rss, after.rss
}
