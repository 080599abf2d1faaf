//go:build unix

package procs

import (
	"testing"
	"time"
)

// TestProcessCPU: the process's CPU time is read and grows with work.
func TestProcessCPU(t *testing.T) {
	a, ok := ProcessCPU()
	if !ok {
		t.Fatal("getrusage failed")
	}
	x := 0
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	b, _ := ProcessCPU()
	if b <= a {
		t.Fatalf("CPU time %v then %v after 30 ms of work (%d loops)", a, b, x)
	}
}
