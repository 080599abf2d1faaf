//go:build !(linux && (amd64 || arm64))

package warm

import "time"

// Raw threads are started by assembly for linux/amd64 and linux/arm64;
// elsewhere Start returns nil.

type rawThread struct{}

func allowedMask() (cpuMask, bool)           { return cpuMask{}, false }
func startRaw(int, time.Duration) *rawThread { return nil }
func (*rawThread) end()                      {}
func (*rawThread) wait()                     {}
func (*rawThread) id() int                   { return 0 }
