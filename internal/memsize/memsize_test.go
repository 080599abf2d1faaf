package memsize

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("no /proc/meminfo: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("MemTotal %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// TestLimit: the limit is known on Linux, never above the machine's
// memory, and comes from the machine unless a cgroup sets a lower one.
func TestLimit(t *testing.T) {
	total := memTotal(t)
	n, source := Limit()
	t.Logf("limit %d MiB from %s; MemTotal %d MiB", n>>20, source, total>>20)
	switch {
	case n == 0:
		t.Fatal("no limit found on Linux")
	case n > total:
		t.Fatalf("limit %d above MemTotal %d", n, total)
	case source == FromSystem && n != total:
		t.Fatalf("system limit %d, MemTotal %d", n, total)
	case source != FromSystem && source != FromCgroup:
		t.Fatalf("source %q", source)
	}
}
