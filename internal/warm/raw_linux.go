//go:build linux && (amd64 || arm64)

package warm

import (
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// rawThread is a warm thread the Go runtime does not know of: cloneWarm
// (raw_linux_*.s) starts it with clone(2), all signals blocked, and it
// runs no Go code, only a loop of nanosleep(ts) until quit is set, then
// exit(2). It holds no P and no M, so GOMAXPROCS stays as it is and the
// scheduler never waits for it; its CPU time is the kernel's wake-up and
// the few instructions of the loop.
//
// The Go heap does not move objects, and the Warmer keeps the rawThread
// referenced until the kernel has cleared tid (CLONE_CHILD_CLEARTID),
// after which the thread touches no memory.
type rawThread struct {
	quit uint32 // set to 1 to end the thread
	tid  int32  // the thread's id: set by clone in the parent, cleared by the kernel at the thread's exit
	ts   syscall.Timespec
	all  uint64 // signal mask with every signal
	old  uint64 // the creating thread's mask, restored after clone
	// stack is the thread's stack pointer's area: the loop pushes nothing
	// and, its signals blocked, no handler runs on it, but clone needs
	// one that is not the creating goroutine's.
	stack [256]byte
}

// cloneFlags: a thread of this process (CLONE_THREAD and what it needs),
// its id written to tid before clone returns and cleared, with a futex
// wake, when it exits.
const cloneFlags = syscall.CLONE_VM | syscall.CLONE_FS | syscall.CLONE_FILES | syscall.CLONE_SIGHAND |
	syscall.CLONE_THREAD | syscall.CLONE_SYSVSEM | syscall.CLONE_PARENT_SETTID | syscall.CLONE_CHILD_CLEARTID

// cloneWarm blocks every signal on the calling thread, clones t's thread
// (stack at stack, which must be 16-byte aligned) and restores the
// caller's mask. It returns the new thread's id, or -errno.
func cloneWarm(t *rawThread, flags uintptr, stack uintptr) int64

// startRaw starts a raw thread sleeping interval at a time, pinned to
// cpu; nil if the kernel refused it.
func startRaw(cpu int, interval time.Duration) *rawThread {
	t := &rawThread{ts: syscall.NsecToTimespec(int64(interval)), all: ^uint64(0)}
	top := (uintptr(unsafe.Pointer(&t.stack[len(t.stack)-1])) + 1) &^ 15
	if tid := cloneWarm(t, cloneFlags, top); tid <= 0 {
		return nil
	}
	var m cpuMask
	if cpu >= 0 && cpu < len(m)*64 {
		m[cpu/64] |= 1 << (cpu % 64)
		// A thread that cannot be pinned still wakes its CPU now and
		// then: leave it running.
		_, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(atomic.LoadInt32(&t.tid)), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	}
	return t
}

// end asks t's thread to exit after the sleep it is in.
func (t *rawThread) end() { atomic.StoreUint32(&t.quit, 1) }

// wait returns once the kernel says t's thread has exited (at most one
// interval after end).
func (t *rawThread) wait() {
	for atomic.LoadInt32(&t.tid) != 0 {
		time.Sleep(100 * time.Microsecond)
	}
}

// allowedMask returns the CPUs this thread (and so the process: no
// thread of it is pinned before) may run on.
func allowedMask() (cpuMask, bool) {
	var m cpuMask
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	return m, e == 0
}

// id is the thread's id, 0 once it has ended.
func (t *rawThread) id() int { return int(atomic.LoadInt32(&t.tid)) }
