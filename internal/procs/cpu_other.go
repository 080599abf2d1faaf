//go:build !unix

package procs

import "time"

// processCPU is not read outside Unix: the controller leaves GOMAXPROCS
// alone there.
func processCPU() (time.Duration, bool) { return 0, false }
