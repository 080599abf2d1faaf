//go:build linux

package fdtable

import (
	"os"
	"syscall"
)

func reserve(n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur < uint64(n) {
		n = int(lim.Cur)
	}
	if n <= 0 {
		return 0, nil
	}
	// A descriptor of our own to duplicate: the process's 0, 1 and 2 may
	// be closed.
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return 0, os.NewSyscallError("pipe2", err)
	}
	defer func() {
		_ = syscall.Close(p[0]) // ours, never handed out
		_ = syscall.Close(p[1])
	}()
	// F_DUPFD takes the lowest free descriptor at or above n-1, so it
	// never replaces one in use (dup2 would), and the table grows to hold
	// it in one step.
	fd, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), syscall.F_DUPFD_CLOEXEC, uintptr(n-1))
	if e != 0 {
		return 0, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", e)
	}
	_ = syscall.Close(int(fd)) // the table keeps its size
	return n, nil
}
