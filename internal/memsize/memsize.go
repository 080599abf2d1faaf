// Package memsize tells how much memory the process may use: the limit
// of its cgroup (v2 memory.max, v1 memory.limit_in_bytes, the smallest on
// the way to the root) when there is one, otherwise the machine's
// physical memory. It only reads: it sets no limit (no GOMEMLIMIT).
package memsize

import "github.com/KimMachineGun/automemlimit/memlimit"

// Where Limit found its number.
const (
	FromCgroup = "cgroup"
	FromSystem = "system"
)

// Limit returns the bytes of memory the process may use and where the
// number comes from (FromCgroup or FromSystem); 0 and "" when neither is
// known. A cgroup limit above the machine's memory (or "max") does not
// count.
func Limit() (bytes uint64, source string) {
	sys, err := memlimit.FromSystem()
	if err != nil {
		sys = 0
	}
	if cg, err := memlimit.FromCgroup(); err == nil && cg > 0 && (sys == 0 || cg < sys) {
		return cg, FromCgroup
	}
	if sys > 0 {
		return sys, FromSystem
	}
	return 0, ""
}
