package bench

import (
	"math"
	"syscall"
	"time"
)

// raiseFileLimit: Windows has no per-process limit on open sockets like
// RLIMIT_NOFILE (memory bounds them), so nothing is raised.
func raiseFileLimit() (uint64, error) { return math.MaxInt32, nil }

// selfCPU returns this process's user + kernel CPU time.
func selfCPU() time.Duration {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	ticks := func(f syscall.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) } // 100 ns units
	return time.Duration((ticks(kernel) + ticks(user)) * 100)
}
