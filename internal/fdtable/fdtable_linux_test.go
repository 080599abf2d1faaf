//go:build linux

package fdtable

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// fdSize is the size of this process's descriptor table: FDSize in
// /proc/self/status.
func fdSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("FDSize:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no FDSize in /proc/self/status")
	return 0
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// TestReserveGrowsTheTable: after Reserve(n) the kernel's table holds n
// descriptors (it was smaller before), and no descriptor is left open.
func TestReserveGrowsTheTable(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	before := fdSize(t)
	want := before * 4
	if uint64(want) > lim.Cur {
		t.Fatalf("open-file limit %d: the test needs %d", lim.Cur, want)
	}
	open := openFDs(t)
	got, err := Reserve(want)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Reserve(%d) = %d", want, got)
	}
	if after := fdSize(t); after < want {
		t.Errorf("FDSize %d -> %d, want at least %d", before, after, want)
	}
	if o := openFDs(t); o != open {
		t.Errorf("open descriptors %d -> %d", open, o)
	}
}

// TestReserveStopsAtTheLimit: a count above the open-file limit sizes the
// table for the limit, without an error. The test lowers its own soft
// limit first (and restores it), so that a machine with a limit in the
// millions does not size a table of megabytes.
func TestReserveStopsAtTheLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	lim := orig
	lim.Cur = min(orig.Cur, uint64(fdSize(t)*8))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Error(err)
		}
	})
	got, err := Reserve(int(lim.Cur) + 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got != int(lim.Cur) {
		t.Errorf("Reserve(limit+1000) = %d, want the limit %d", got, lim.Cur)
	}
	if n := fdSize(t); n < int(lim.Cur) {
		t.Errorf("FDSize %d, want at least %d", n, lim.Cur)
	}
	if got, err := Reserve(0); got != 0 || err != nil {
		t.Errorf("Reserve(0) = %d, %v", got, err)
	}
}
