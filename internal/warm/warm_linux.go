//go:build linux

package warm

import (
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// allowedMask returns the CPUs this thread (and so the process: no
// thread of it is pinned before) may run on.
func allowedMask() (cpuMask, bool) {
	var m cpuMask
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	return m, e == 0
}

// pin binds the calling thread to cpu.
func pin(cpu int) bool {
	var m cpuMask
	if cpu < 0 || cpu >= len(m)*64 {
		return false
	}
	m[cpu/64] |= 1 << (cpu % 64)
	return setAffinity(&m)
}

// unpin binds the calling thread to the CPUs of m again.
func unpin(m cpuMask) bool { return setAffinity(&m) }

func setAffinity(m *cpuMask) bool {
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	return e == 0
}

// sleep sleeps d in the kernel, on this thread's CPU.
func sleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // EINTR: the loop sleeps again
}

// restoreProcs sets GOMAXPROCS back: to the runtime's default, which
// goes on following the CPU limit, unless the environment set it.
func restoreProcs(prev int) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(prev)
}
