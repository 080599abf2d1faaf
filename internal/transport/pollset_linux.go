//go:build linux

package transport

import (
	"os"
	"syscall"
	"unsafe"
)

// pollSet is an epoll set whose own descriptor waits in Go's netpoller (an
// epoll set is readable while it has events): a goroutine waiting for it
// holds no thread in a blocking epoll_wait. A goroutine blocked in a system
// call keeps its P until the runtime's monitor takes it back, and each
// such hand-off kept the monitor waking every 20 us. The accepter and the
// parker each own one.
type pollSet struct {
	fd   int
	file *os.File        // fd, as the netpoller waits on it; closing it ends a wait
	rc   syscall.RawConn // file's: Read waits for events
}

// newPollSet creates an empty set named name (in /proc/self/fd).
func newPollSet(name string) (*pollSet, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd) // never used
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), name) // non-blocking: registered with the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close() // never used
		return nil, err
	}
	return &pollSet{fd: fd, file: f, rc: rc}, nil
}

// epollCtl and epollWaitNow are epoll_ctl and a non-blocking epoll_pwait
// as raw system calls: neither blocks, and the scheduler's system call
// bookkeeping would wake the runtime's monitor thread from its deep sleep
// (and set it polling every 20 us again) each time.
func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

func epollWaitNow(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

// sysRW is one read(2) or write(2) (trap) on a non-blocking descriptor,
// without the scheduler's system call bookkeeping (which at low message
// rates woke the runtime's monitor thread for every read and write),
// again when interrupted.
func sysRW(trap, fd uintptr, buf []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}
