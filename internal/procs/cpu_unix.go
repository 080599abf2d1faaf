//go:build unix

package procs

import (
	"syscall"
	"time"
)

// ProcessCPU is the user and system CPU time of the process so far;
// false where it cannot be read.
func ProcessCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
