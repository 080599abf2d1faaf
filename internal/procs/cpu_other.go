//go:build !unix

package procs

import "time"

// ProcessCPU is not read outside Unix: the controller leaves GOMAXPROCS
// alone there.
func ProcessCPU() (time.Duration, bool) { return 0, false }
