//go:build !linux

package warm

import "time"

func allowedMask() (cpuMask, bool) { return cpuMask{}, false } // Start returns nil
func pin(int) bool                 { return false }
func unpin(cpuMask) bool           { return false }
func sleep(time.Duration)          {}
func restoreProcs(int)             {}
