//go:build unix

package diskstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir takes an exclusive flock on dir/LOCK and writes our pid into it.
// The lock goes with the process: a crashed broker leaves no stale lock.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("diskstore: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path) // best effort: the pid only decorates the error
		_ = f.Close()             // nothing was locked
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: data directory %s is in use by another petrel (pid %s)", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("diskstore: lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	_, err = f.WriteAt(pid, 0)
	if err == nil {
		err = f.Truncate(int64(len(pid)))
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// The lock is held; the pid only decorates another process's
		// error, and a full disk must not stop the store from opening
		// (read-only: see the package documentation).
		err = f.Truncate(0)
	}
	if err != nil {
		_ = f.Close() // releases the lock; the write error is the one to report
		return nil, fmt.Errorf("diskstore: lock %s: %w", path, err)
	}
	return f, nil
}

// unlock releases the directory lock.
func (s *Store) unlock() {
	if s.lock != nil {
		_ = s.lock.Close() // closing releases the flock; nothing to do on error
		s.lock = nil
	}
}
